"""Crash safety under real SIGKILLs: `mammo-keras train`, `run`, `data synth` and `export`
killed at seeded random moments, then run again (`--resume` for train), must leave no corrupt
file, lose no finished epoch / cell / phantom, and a deterministic training must end with the
weights of an uninterrupted run. Slow (each case starts several processes).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600
pytestmark = pytest.mark.slow


def command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "mammo_keras.cli", *arguments]


def run_to_end(arguments: list[str], expected: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(arguments, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == expected, result.stderr[-3000:]
    return result


def killed_after(arguments: list[str], seconds: float) -> None:
    """Start the command and SIGKILL it after `seconds` (if it is still running)."""
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)


def timed(arguments: list[str]) -> float:
    started = time.monotonic()
    run_to_end(arguments)
    return time.monotonic() - started


def tiny_config(path: Path, **extra) -> Path:
    config = {"name": "crash", "data": {"synthetic": {"count": 24, "size": 256},
                                        "image_size": 48, "split": [0.5, 0.25, 0.25]},
              "training": {"epochs": 4, "batch_size": 4, "tensorboard": False,
                           "deterministic": True},
              "evaluation": {"resamples": 20}, **extra}
    path.write_text(yaml.safe_dump(config))
    return path


def final_weights(run: Path) -> list[np.ndarray]:
    from mammo_keras.models import load_model

    return load_model(run / "model.keras").get_weights()


def test_train_killed_at_random_moments_resumes_to_the_uninterrupted_weights(tmp_path):
    config = tiny_config(tmp_path / "c.yaml")
    whole = timed(command("train", "--config", str(config), "--out", str(tmp_path / "whole")))
    moments = random.Random(0)
    run = tmp_path / "killed"
    for _ in range(4):  # kill points spread over the whole run, the start-up included
        killed_after(command("train", "--config", str(config), "--out", str(run), "--resume"),
                     moments.uniform(0.2, 1.0) * whole)
        if (run / "done.json").exists():
            break
        history = run / "history.csv"
        if history.exists():  # what is written is whole: one header and complete rows
            lines = history.read_text().splitlines()
            assert all(len(line.split(",")) == len(lines[0].split(",")) for line in lines)
    run_to_end(command("train", "--config", str(config), "--out", str(run), "--resume"))
    for ours, reference in zip(final_weights(run), final_weights(tmp_path / "whole")):
        np.testing.assert_array_equal(ours, reference)
    rows = (run / "history.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2", "3", "4"]
    assert not (run / "checkpoints").exists() and not (run / "cache").exists()


def test_a_grid_killed_twice_keeps_its_finished_cells(tmp_path):
    config = tiny_config(tmp_path / "g.yaml", grid={"training.seed": [0, 1, 2]})
    config.write_text(config.read_text().replace("epochs: 4", "epochs: 1"))
    out = tmp_path / "grid"
    moments = random.Random(1)
    finished = []
    for _ in range(2):
        killed_after(command("run", str(config), "--out", str(out)), moments.uniform(25, 60))
        done = sorted(path.parent.name for path in out.glob("cells/*/done.json"))
        assert all(cell in done for cell in finished)  # a finished cell stays finished
        for cell in done:
            json.loads((out / "cells" / cell / "done.json").read_text())  # whole JSON
        finished = done
    run_to_end(command("run", str(config), "--out", str(out)))
    assert len(list(out.glob("cells/*/done.json"))) == 3
    assert len((out / "results.csv").read_text().splitlines()) == 4


def test_synth_killed_midway_finishes_with_every_phantom_readable(tmp_path):
    from mammo_keras.data import load_records, read_image

    out = tmp_path / "phantoms"
    arguments = command("data", "synth", "--count", "60", "--size", "256", "--out", str(out))
    killed_after(arguments, 6.0)
    run_to_end(arguments)
    records = load_records(out)
    assert len(records) == 60 and not records.skipped
    for record in records:
        read_image(record.path)  # no half-written file survived


def test_export_killed_midway_leaves_no_artefact_a_loader_would_take(tmp_path):
    from mammo_keras.export import load_predictor
    from mammo_keras.models import build_classifier

    build_classifier("baseline_cnn", "gap", 3, (64, 64, 1)).save(tmp_path / "m.keras")
    out = tmp_path / "export"
    arguments = command("export", str(tmp_path / "m.keras"), "--out", str(out))
    whole = timed(command("export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "ref")))
    moments = random.Random(2)
    for _ in range(3):
        killed_after(arguments, moments.uniform(0.3, 0.95) * whole)
        for candidate in [*out.glob("**/saved_model.pb"), *out.glob("**/*.tflite")]:
            artefact = candidate.parent if candidate.name == "saved_model.pb" else candidate
            load_predictor(artefact)  # whatever a loader can find is complete
        if out.exists():
            break
    run_to_end(arguments)
    assert list(out.glob("**/saved_model.pb")) and list(out.glob("**/*.tflite"))
