"""Training and experiments: configs, `train` (one run) and `run_experiment` (a grid of runs)."""

from mammo_keras.training.config import ConfigError, load_config, resolve_config
from mammo_keras.training.run_end import read_done
from mammo_keras.training.trainer import train

__all__ = ["ConfigError", "load_config", "read_done", "resolve_config", "train"]
