"""The command line answers without TensorFlow: `--help`, `--version` and argument errors import
neither TensorFlow nor Keras, and TensorFlow's start-up lines stay off the terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys
from mammo_keras.cli import main
try:
    status = main({argv!r})
except SystemExit as stop:
    status = stop.code
heavy = sorted(name for name in ("tensorflow", "keras", "torch", "jax", "pydicom", "scipy")
               if name in sys.modules)
print("STATUS", status, "HEAVY", ",".join(heavy))
"""


def _probe(argv: list[str]) -> tuple[str, str]:
    """(exit status, the heavy modules imported) of `mammo-keras ARGV` in a fresh process."""
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True,
                            text=True, timeout=120)
    words = result.stdout.split()
    at = len(words) - words[::-1].index("STATUS") - 1  # the probe's own line, after any help
    return words[at + 1], " ".join(words[at + 3:])


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"],
                                  ["export", "m.keras", "--out", "o", "--format", "bogus"],
                                  ["bench", "--model", "resnet"], ["no-such-command"]])
def test_answers_that_need_no_model_import_no_tensorflow(argv):
    status, heavy = _probe(argv)
    assert status in ("0", "2") and heavy == "", (argv, status, heavy)


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "{tmp}/none.keras", "--data", "{tmp}", "--out", "{tmp}/e"],
     "none.keras: model file not found"),
    (["explain", "{tmp}", "{tmp}", "--out", "{tmp}/e"], "is a folder (a SavedModel?), not a "
                                                        ".keras model file; explain needs"),
    (["predict", "{tmp}/none.keras", "{tmp}", "--out", "{tmp}/p.csv"], "model not found"),
    (["predict", "{tmp}", "{tmp}", "--out", "{tmp}/p.txt"], "--out must end in .csv or .json"),
    (["train", "--config", "{tmp}/none.yaml", "--out", "{tmp}/t"], "config file not found"),
    (["train", "--config", "{tmp}/none.yaml", "--out", "{tmp}/t", "--backend", "jax"],
     "config file not found"),
    (["run", "{tmp}", "--out", "{tmp}/t"], "is a folder; a config file was expected"),
    (["train", "--config", "{tmp}/c.yaml", "--out", "{tmp}/c.yaml"],
     "the output folder is a file"),
    (["convert", "open_clip", "{tmp}/c.yaml", "--out", "{tmp}/m.keras"],
     "is a file; a checkpoint folder was expected")])
def test_path_mistakes_are_answered_before_tensorflow(argv, message, tmp_path):
    """A missing model or config, an --out of the wrong kind: one line at once, not after the
    seconds TensorFlow takes to load (and its start-up lines)."""
    (tmp_path / "c.yaml").write_text("name: c\n")
    argv = [part.format(tmp=tmp_path) for part in argv]
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.split()[-3:] == ["STATUS", "2", "HEAVY"], (argv, result.stdout)
    error = result.stderr.strip()
    assert error.count("\n") == 0 and message in error, error


@pytest.mark.parametrize("config, message", [
    ("training: {epochz: 3}", "unknown key 'training.epochz'"),
    ("model: {backbone: resnet}", "model.backbone must be one of"),
    ("data: {synthetic: {size: 64}}", "data.synthetic.size must be in [256, 4096], got 64")])
def test_config_mistakes_are_answered_before_tensorflow(config, message, tmp_path):
    (tmp_path / "c.yaml").write_text(f"name: c\n{config}\n")
    argv = ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.split()[-3:] == ["STATUS", "2", "HEAVY"], (config, result.stdout)
    assert message in result.stderr and result.stderr.strip().count("\n") == 0


def test_the_command_line_choices_are_the_registries():
    from mammo_keras.models import BACKBONE_NAMES, BACKBONES

    assert BACKBONE_NAMES == tuple(BACKBONES)


def _stderr_of_tensorflow_import(quiet: bool) -> str:
    code = ("from mammo_keras.quiet_tensorflow import silence_tensorflow_start\n"
            + ("silence_tensorflow_start()\n" if quiet else "")
            + "import mammo_keras, keras, tensorflow as tf\n"
              "print(float(tf.reduce_sum(tf.ones(3))))")
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "3.0", result.stderr
    return result.stderr


def test_tensorflow_start_up_lines_are_kept_off_the_terminal():
    assert "oneDNN" in _stderr_of_tensorflow_import(quiet=False)  # what a user saw
    assert _stderr_of_tensorflow_import(quiet=True) == ""


def test_a_failed_quiet_import_shows_what_it_caught(tmp_path):
    package = tmp_path / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import os\nos.write(2, b'C++ says: cannot load libtensorflow\\n')\n"
        "raise ImportError('broken wheel')\n")
    code = ("from mammo_keras.quiet_tensorflow import silence_tensorflow_start\n"
            "silence_tensorflow_start()\nimport tensorflow\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}"
                                 f"{os.environ.get('PYTHONPATH', '')}"}, timeout=60)
    assert result.returncode == 1
    assert "C++ says: cannot load libtensorflow" in result.stderr
    assert "ImportError: broken wheel" in result.stderr


@pytest.mark.parametrize("package", ["bench", "dashboard", "data", "evaluation", "explain",
                                     "export", "models", "tasks", "training"])
def test_every_exported_name_is_what_its_module_defines(package):
    import importlib
    import types

    namespace = importlib.import_module(f"mammo_keras.{package}")
    for name in namespace.__all__:
        value = getattr(namespace, name)
        assert not isinstance(value, types.ModuleType), f"mammo_keras.{package}.{name}"


RUNTIME_PROBE = """
from mammo_keras.cli import _tensorflow_logs
_tensorflow_logs(verbose={verbose}, user_level=None)
import tensorflow as tf
dataset = tf.data.Dataset.range(10).cache({cache!r}).batch(4)  # TF 2.21 warns after writing it
print(sum(1 for _ in dataset))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_runtime_log_lines_of_tensorflow_are_hidden_unless_verbose(tmp_path, verbose):
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_CPP_MIN_LOG_LEVEL"}
    code = RUNTIME_PROBE.format(verbose=verbose, cache=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "3", result.stderr
    if verbose:
        assert "cache_dataset_ops" in result.stderr  # the line a user would otherwise meet
    else:
        assert result.stderr == ""


FIRST_IMPORT_PROBE = """
import importlib, sys
import tensorflow, keras  # loaded once; only mammo_keras' own modules are imported afresh
failures = []
for package in {packages!r}:
    namespace = importlib.import_module("mammo_keras." + package)
    modules = sorted(set(getattr(namespace, "_EXPORTS", {{}}).values()))
    for module in modules:
        for name in [key for key in sys.modules if key.startswith("mammo_keras")]:
            del sys.modules[name]
        try:
            importlib.import_module(module)
        except Exception as error:
            failures.append(f"{{module}}: {{type(error).__name__}}: {{error}}")
print("FAILURES", failures)
"""


def test_every_exported_module_imports_first_in_a_fresh_process():
    """Each module behind a lazy export, imported before any other of mammo_keras (as
    `from mammo_keras.data import write_synthetic` in a new script does): no import cycle."""
    packages = ["bench", "data", "evaluation", "explain", "export", "convert"]
    result = subprocess.run([sys.executable, "-c", FIRST_IMPORT_PROBE.format(packages=packages)],
                            capture_output=True, text=True, timeout=600)
    assert "FAILURES []" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
