"""Performance benchmarks: `mammo-keras bench` and the `benchmarks/` suite.

Throughput and peak memory of the classifiers in training and inference, each against the
references measured in the same run: the naive Keras route (`keras.applications` + default
fit), the same architecture in plain PyTorch (optional) and the machine's matmul ceiling.

>>> from mammo_keras.bench import plan
>>> [spec["model"] for spec in plan(["convnext_tiny"], ["gagm_se"], ["train"], 64, 2)]
['convnext_tiny', 'keras.applications:convnext_tiny', 'pytorch:convnext_tiny', 'ceiling:matmul']
"""

from mammo_keras.lazy import lazy_exports

# name -> the module it comes from, imported when first used (mammo_keras.lazy)
_EXPORTS = {
    "add_ratios": "mammo_keras.bench.suite",
    "forward_flops": "mammo_keras.bench.flops",
    "markdown_table": "mammo_keras.bench.suite",
    "plan": "mammo_keras.bench.suite",
    "ROW_KEYS": "mammo_keras.bench.suite",
    "run": "mammo_keras.bench.suite",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
