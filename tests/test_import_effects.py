"""Importing mammo_keras changes nothing in the process, and provenance names only the commit
of mammo-keras' own checkout, asked when a run starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mammo_keras
from mammo_keras import provenance

PROBE = """
import os, subprocess
import keras, tensorflow  # what they set for themselves is theirs
environment = dict(os.environ)
calls = []
real = subprocess.run
subprocess.run = lambda *a, **k: calls.append(a) or real(*a, **k)
import mammo_keras, mammo_keras.provenance, mammo_keras.tasks, mammo_keras.training
assert dict(os.environ) == environment, set(os.environ.items()) ^ set(environment.items())
assert calls == [], calls
print("unchanged")
"""


def test_importing_the_package_sets_no_variable_and_runs_no_command():
    environment = {key: value for key, value in __import__("os").environ.items()
                   if not key.startswith(("TF_", "KERAS_"))}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("unchanged")


def test_prepare_tensorflow_sets_what_the_user_did_not(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    before = mammo_keras.prepare_tensorflow()
    assert before == {"TF_ENABLE_ONEDNN_OPTS": None, "TF_CPP_MIN_LOG_LEVEL": "2"}
    import os

    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1" and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"


def test_a_checkout_around_an_installed_package_is_not_its_commit(monkeypatch):
    def run(command, **options):
        if command[:2] == ["git", "rev-parse"] and "--show-toplevel" in command:
            return subprocess.CompletedProcess(command, 0, "/some/other/repository\n", "")
        raise AssertionError(f"asked another repository: {command}")

    monkeypatch.setattr(provenance.subprocess, "run", run)
    assert provenance.git_commit() == f"release {mammo_keras.__version__}"


def test_the_commit_of_this_checkout_is_its_own():
    source = Path(mammo_keras.__file__).resolve().parents[1]
    if not (source / ".git").exists():
        import pytest

        pytest.skip("mammo_keras is not run from a git checkout here")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=source, text=True,
                          capture_output=True, check=True).stdout.strip()
    assert provenance.git_commit().split("+")[0] == head


LOAD_PROBE = """
import sys
import keras
import mammo_keras
path = sys.argv[1]
assert mammo_keras.load_model(path).get_layer("embedding") is not None
import mammo_keras.models
keras.saving.load_model(path)
print("loaded")
"""


def test_the_guides_way_to_load_a_saved_classifier_works_in_a_fresh_process(tmp_path):
    from mammo_keras.models import build_classifier

    path = tmp_path / "model.keras"
    build_classifier("baseline_cnn", head="gagm_se", num_classes=3,
                     input_shape=(32, 32, 1)).save(path)
    result = subprocess.run([sys.executable, "-c", LOAD_PROBE, str(path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("loaded"), \
        result.stderr[-2000:]
    guide = (Path(__file__).parents[1] / "docs" / "guide.md").read_text()
    assert 'mammo_keras.load_model("model.keras")' in guide  # the sentence this test checks
