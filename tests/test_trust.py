"""Code named by a config or a model file runs only when the user trusts it."""

from __future__ import annotations

import os
import sys

import keras
import pytest
import yaml

from mammo_keras import cli
from mammo_keras.errors import UserError
from mammo_keras.models import load_model
from mammo_keras.models.builders import build_model, get_builder
from mammo_keras.tasks import get_task_class
from mammo_keras.training import ConfigError, resolve_config
from mammo_keras.trust import TRUST_VARIABLE, import_reference, trusting_code


@pytest.fixture
def untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)


@pytest.fixture
def module_with_side_effect(tmp_path, monkeypatch):
    """A module that writes a file when imported, importable as `side_effect_module`."""
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_module.py").write_text(
        "import pathlib, keras\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "def build(num_classes, input_shape):\n"
        "    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),\n"
        "                             keras.layers.Dense(num_classes)])\n"
        "def build_model_declared(num_classes, input_shape) -> keras.Model:\n"
        "    return 'not a model'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "side_effect_module", raising=False)
    return marker


def test_a_builder_outside_the_package_is_neither_imported_nor_called(
        untrusted, module_with_side_effect, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command))
    with pytest.raises(ConfigError, match=r"model.builder 'os:system' is code from module "
                                          r"'os', outside mammo_keras; .*--trust-code"):
        resolve_config({"model": {"builder": "os:system", "command": "touch x"}})
    with pytest.raises(UserError, match=r"'side_effect_module'.*MAMMO_KERAS_TRUST_CODE=1"):
        get_builder("side_effect_module:build")
    assert not calls and not module_with_side_effect.exists()


def test_a_trusted_reference_must_still_be_a_model_builder(module_with_side_effect,
                                                          monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda command: calls.append(command))
    with trusting_code():
        with pytest.raises(UserError, match=r"'os:system' is not a model builder"):
            get_builder("os:system")  # (the stand-in above declares no return type)
        with pytest.raises(UserError, match=r"build declares that it returns nothing, not a "
                                            r"keras.Model"):
            get_builder("side_effect_module:build")
        with pytest.raises(UserError, match=r"returned a str, not a keras.Model"):
            build_model({"builder": "side_effect_module:build_model_declared"}, 2, 8)
    assert not calls


def test_builtins_and_classes_are_not_builders(monkeypatch):
    monkeypatch.setenv(TRUST_VARIABLE, "1")
    with pytest.raises(UserError, match=r"it is a builtin_function_or_method"):
        get_builder("os:system")
    with pytest.raises(UserError, match=r"it is a type"):
        get_builder("keras:Model")


def test_a_task_outside_the_package_is_refused_untrusted(untrusted, module_with_side_effect):
    with pytest.raises(UserError, match=r"task 'side_effect_module:Task' is code from module"):
        get_task_class("side_effect_module:Task")
    assert not module_with_side_effect.exists()
    with pytest.raises(UserError, match=r"not a reference 'package.module:name'"):
        import_reference("os:system()", "task")


def test_the_package_s_own_references_need_no_trust(untrusted):
    assert get_builder("classifier").__name__ == "build_classifier"
    assert get_builder("mammo_keras.models.hds_unet:build_hds_unet").__name__ == \
        "build_hds_unet"
    with pytest.raises(UserError, match=r"not a model builder: it is a function|declares"):
        get_builder("mammo_keras.cli:main")


def test_the_command_line_refuses_a_config_that_runs_a_command(untrusted, tmp_path, capsys):
    marker = tmp_path / "ran"
    config = {"model": {"builder": "os:system", "command": f"touch {marker}"}}
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "'os:system' is code from module 'os'" in error
    assert cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run"),
                     "--trust-code"]) == 2
    assert "is not a model builder" in capsys.readouterr().err
    assert not marker.exists()
    assert TRUST_VARIABLE not in os.environ  # the command line's trust ends with the command


def _with_lambda(path, nested: bool) -> None:
    def double(x):
        return x * 2

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(double, name="doubling")(inputs)
    model = keras.Model(inputs, outputs)
    if nested:
        outer = keras.Input((4,))
        model = keras.Model(outer, keras.layers.Dense(2)(model(outer)))
    model.save(path)


@pytest.mark.parametrize("nested", [False, True])
def test_a_model_file_with_a_lambda_layer_is_said_to_hold_code(untrusted, tmp_path, nested):
    path = tmp_path / "lambda.keras"
    _with_lambda(path, nested)
    with pytest.raises(UserError, match=r"lambda.keras: holds Python code \(Lambda layer "
                                        r"'doubling'\), which loading would run; refused"):
        load_model(path)


def test_a_savedmodel_folder_is_not_called_a_missing_file(tmp_path):
    (tmp_path / "saved" / "1").mkdir(parents=True)
    with pytest.raises(UserError, match=r"saved: is a folder \(a SavedModel\?\), not a .keras "
                                        r"model file"):
        load_model(tmp_path / "saved")
