"""`train` / `run` write only into a new, empty or own run folder, one process at a time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from mammo_keras import cli
from mammo_keras.errors import UserError
from mammo_keras.training.run_folder import LOCK, MARKER, check_run_folder, owned_run_folder

TINY = {"name": "tiny", "data": {"synthetic": {"count": 12, "size": 256}, "image_size": 32,
                                 "split": [0.5, 0.25, 0.25]},
        "model": {"backbone": "baseline_cnn", "head": "gap"},
        "training": {"epochs": 1, "batch_size": 4, "tensorboard": False},
        "evaluation": {"resamples": 0}}


def _user_folder(root):
    """A folder of the user's own work, with the names a run would use."""
    for name in ("cache", "checkpoints", "workers"):
        (root / name).mkdir(parents=True)
        (root / name / "mine.txt").write_text("the user's")
    (root / "metrics.json").write_text('{"mine": 1}')
    (root / "config.yaml").write_text("mine: true\n")
    return root


def test_train_into_a_folder_that_is_not_a_run_touches_nothing(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = _user_folder(tmp_path / "work")
    before = sorted(str(path.relative_to(out)) for path in out.rglob("*"))
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "work: not empty and not a mammo-keras run folder (it holds cache, checkpoints, " \
        "config.yaml, metrics.json and 1 more)" in error
    assert sorted(str(path.relative_to(out)) for path in out.rglob("*")) == before
    assert (out / "metrics.json").read_text() == '{"mine": 1}'
    assert cli.main(["run", str(config), "--out", str(out)]) == 2  # the same for `run`
    assert sorted(str(path.relative_to(out)) for path in out.rglob("*")) == before


def test_a_run_folder_is_marked_and_taken_again_by_the_same_config(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    out.mkdir()  # empty: accepted
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0
    assert json.loads((out / MARKER).read_text())["kind"] == "run"
    assert not (out / "checkpoints").exists()  # the run's own scratch, removed at its end
    capsys.readouterr()
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0  # finished
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**TINY, "training": {**TINY["training"], "seed": 1}}))
    assert cli.main(["train", "--config", str(other), "--out", str(out)]) == 2
    assert "holds a run of another config" in capsys.readouterr().err
    assert cli.main(["run", str(other), "--out", str(out)]) == 2  # a run folder, not a grid's
    assert "is a mammo-keras run folder, not an experiment folder" in capsys.readouterr().err


def test_a_folder_from_before_the_marker_is_still_a_run_folder(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "done.json").write_text("{}")
    check_run_folder(tmp_path / "old")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="file: is a file; --out names a run folder"):
        check_run_folder(tmp_path / "file")


def test_a_second_process_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from mammo_keras.training.run_folder import owned_run_folder
            with owned_run_folder({str(out)!r}, "run"):
                print("holding", flush=True)
                sys.stdin.readline()
            """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(UserError, match=rf"run: process {holder.pid} is writing this run "
                                            r"folder now; wait for it to end"):
            with owned_run_folder(out, "run"):
                pass
    finally:
        holder.communicate("\n", timeout=60)
    with owned_run_folder(out, "run"):  # the lock went with the process
        assert (out / LOCK).read_text() == str(__import__("os").getpid())


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with owned_run_folder(tmp_path / "grid", "experiment"):
        with owned_run_folder(tmp_path / "grid", "run"):  # a grid of one cell trains in it
            pass
        with owned_run_folder(tmp_path / "grid", "experiment"):
            pass
    with pytest.raises(UserError, match="is a mammo-keras experiment folder, not a run folder"):
        with owned_run_folder(tmp_path / "grid", "run"):
            pass


def test_a_folder_a_worker_made_first_is_a_run_folder(tmp_path):
    """A cluster's worker may create out/workers/worker-1 before the chief marks out."""
    (tmp_path / "run" / "workers" / "worker-1").mkdir(parents=True)
    check_run_folder(tmp_path / "run")
    (tmp_path / "run" / "workers" / "notes").mkdir()
    with pytest.raises(UserError, match="not a mammo-keras run folder"):
        check_run_folder(tmp_path / "run")


def test_a_run_folder_of_another_config_is_refused_even_before_its_first_epoch(tmp_path):
    with owned_run_folder(tmp_path / "run", "run", "hash-a"):
        pass  # a run that stopped before its first checkpoint: nothing but the marker
    with pytest.raises(UserError, match="run: holds a run of another config"):
        with owned_run_folder(tmp_path / "run", "run", "hash-b"):
            pass
    with owned_run_folder(tmp_path / "run", "run", "hash-a"):
        pass
