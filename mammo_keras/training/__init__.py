"""Training and experiments: configs, `train` (one run) and `run_experiment` (a grid of runs).

The names are imported when first used, so reading and checking a config
(`mammo_keras.training.config`) does not load TensorFlow.
"""

from mammo_keras.lazy import lazy_exports

__all__ = ["ConfigError", "load_config", "read_done", "resolve_config", "train"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "ConfigError": "mammo_keras.training.config", "load_config": "mammo_keras.training.config",
    "resolve_config": "mammo_keras.training.config", "read_done": "mammo_keras.training.run_end",
    "train": "mammo_keras.training.trainer"})
