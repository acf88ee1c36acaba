"""Private Keras / TensorFlow / keras-hub names are reached from `mammo_keras.compat` only, and
a missing one is one line naming the installed version and the one it was written for."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import pytest

import mammo_keras
from mammo_keras import compat

PACKAGE = Path(mammo_keras.__file__).parent
PRIVATE = re.compile(r"keras\.src\b|tensorflow\.python\b|keras_hub\.src\b|\._keras_history\b|"
                     r"\b_outputs_struct\b|\._self_attention_layer|\._feedforward_|"
                     r"_pywrap_util_port|_gradient_registry")


def test_no_module_but_compat_reaches_a_private_name():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
                 for path in sorted(PACKAGE.rglob("*.py")) if path.name != "compat.py"
                 for number, line in enumerate(path.read_text().splitlines(), start=1)
                 if PRIVATE.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []


def test_the_accessors_answer_on_the_installed_libraries():
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(2, name="dense")(inputs)
    model = keras.Model(inputs, outputs)
    assert compat.producing_operation(outputs).name == "dense"
    assert compat.is_functional_graph(model)
    assert not compat.is_functional_graph(keras.Sequential([keras.layers.Dense(1)]))
    assert isinstance(compat.gradient_registry(), dict)
    assert compat.op_determinism_enabled() in (True, False)
    module = compat.keras_tensorflow_trainer()
    assert callable(module.reduce_per_replica)


def test_a_missing_private_name_is_one_line_with_the_versions():
    with pytest.raises(compat.PrivateAPIMissing) as raised:
        compat.producing_operation(object())
    message = str(raised.value)
    assert "\n" not in message and f"keras {keras.__version__}" in message
    assert f"written for keras {compat.WRITTEN_FOR['keras']}" in message
