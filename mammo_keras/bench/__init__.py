"""Performance benchmarks: `mammo-keras bench` and the `benchmarks/` suite.

Throughput and peak memory of the classifiers in training and inference, each against the
references measured in the same run: the naive Keras route (`keras.applications` + default
fit), the same architecture in plain PyTorch (optional) and the machine's matmul ceiling.

>>> from mammo_keras.bench import plan
>>> [spec["model"] for spec in plan(["convnext_tiny"], ["gagm_se"], ["train"], 64, 2)]
['convnext_tiny', 'keras.applications:convnext_tiny', 'pytorch:convnext_tiny', 'ceiling:matmul']
"""

from mammo_keras.bench.flops import forward_flops
from mammo_keras.bench.suite import ROW_KEYS, add_ratios, markdown_table, plan, run

__all__ = ["ROW_KEYS", "add_ratios", "forward_flops", "markdown_table", "plan", "run"]
