"""tf.distribute: a mirrored run and a two-worker run give the weights of one device; a killed
cluster resumes; the pieces (shards, TF_CONFIG, checkpoints kept for a cluster, FSL centres
from reduced sums) against plain references.

The runs train in float64 (`training.precision`): in float32 the synchronised BatchNorm's
one-pass variance and the replicas' summation order round differently from one device, and
max-pooling turns those roundings into different gradients, so only float64 shows that the
arithmetic is the same.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from keras import ops

from mammo_keras.devtools.local_ports import free_ports
from mammo_keras.losses import FeatureSmoothingLoss
from mammo_keras.training import resolve_config
from mammo_keras.training.checkpoints import TrainingState
from mammo_keras.training.config import ConfigError
from mammo_keras.training.distribute import _task_of_tf_config, make_cluster, shard_records

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "distributed_run.py"
TIMEOUT = 300  # seconds for one training process; each takes well under a minute


def config(**training) -> dict:
    """24 phantoms at 64 px (12 training images), trained in float64 with SGD."""
    return {"name": "tiny",
            "data": {"synthetic": {"count": 24, "size": 256}, "image_size": 64,
                     "split": [0.5, 0.25, 0.25]},
            "model": {"dropout": 0.0},
            "training": {"epochs": 2, "batch_size": 4, "tensorboard": False,
                         "deterministic": True, "fsl_lambda": 0.05, "optimizer": "sgd",
                         "learning_rate": 0.01, "precision": "float64", **training},
            "evaluation": {"resamples": 20}}


def start(tmp: Path, name: str, settings: dict, out: Path, data: Path, *extra: str,
          worker: int | None = None, ports: list[int] | None = None) -> subprocess.Popen:
    """One training process (`tests/distributed_run.py`), its output in tmp/name.log."""
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(settings))
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    if worker is not None:
        environment["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": worker}})
    log = open(tmp / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, str(RUNNER), str(path), str(out), str(data),
                             str(tmp / f"{name}.npz"), *extra],
                            stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=ROOT)


def finish(process: subprocess.Popen, tmp: Path, name: str) -> None:
    try:
        code = process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"{name} ran past {TIMEOUT} s") from None
    assert code == 0, (tmp / f"{name}.log").read_text()[-3000:]


def run_cluster(tmp: Path, name: str, settings: dict, out: Path, data: Path, *extra: str
                ) -> list[subprocess.Popen]:
    ports = free_ports(2)
    return [start(tmp, f"{name}-{index}", settings, out, data, *extra, worker=index,
                  ports=ports) for index in range(2)]


def weights(tmp: Path, name: str) -> dict:
    with np.load(tmp / f"{name}.npz") as stored:
        return {key: stored[key] for key in stored.files}


def assert_same_weights(first: dict, second: dict, tolerance: float = 1e-9) -> None:
    assert first.keys() == second.keys()
    worst = max(float(np.abs(first[key] - second[key]).max()) for key in first)
    assert worst <= tolerance, worst


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("phantoms")


@pytest.fixture(scope="module")
def full_batch_reference(tmp_path_factory, phantoms) -> tuple[Path, dict]:
    """One process, the 12 training images as one batch (so two workers' shards make the
    same global batch), no augmentation (drawn per worker), three epochs."""
    tmp = tmp_path_factory.mktemp("reference")
    settings = config(batch_size=12, augment=False, epochs=3)
    finish(start(tmp, "one", settings, tmp / "one", phantoms), tmp, "one")
    return tmp, settings


# --- a strategy trains what one device trains ---------------------------------------------

def test_mirrored_on_two_devices_gives_the_weights_of_one(tmp_path, phantoms):
    """Batches of 4 split 2 + 2 across two logical CPUs, with augmentation, class weights,
    synchronised BatchNorm and the Feature Smoothing centres: the one-device weights."""
    one = start(tmp_path, "one", config(), tmp_path / "one", phantoms)
    finish(one, tmp_path, "one")
    mirrored = start(tmp_path, "mirrored", config(distribute="mirrored"),
                     tmp_path / "mirrored", phantoms, "--logical-cpus", "2")
    finish(mirrored, tmp_path, "mirrored")
    done = json.loads((tmp_path / "mirrored" / "done.json").read_text())
    assert done["distribute"] == {"strategy": "mirrored", "workers": 1, "replicas": 2}
    first, second = weights(tmp_path, "one"), weights(tmp_path, "mirrored")
    assert np.abs(first["baseline_cnn_gagm_se_fsl/class_centres"]).max() > 0
    assert_same_weights(first, second)


def test_two_workers_give_the_result_of_one_process(full_batch_reference, phantoms):
    tmp, settings = full_batch_reference
    cluster = run_cluster(tmp, "pair", {**settings, "training": {
        **settings["training"], "distribute": "multi_worker"}}, tmp / "pair", phantoms)
    for index, process in enumerate(cluster):
        finish(process, tmp, f"pair-{index}")
    assert_same_weights(weights(tmp, "one"), weights(tmp, "pair-0"))
    assert_same_weights(weights(tmp, "pair-0"), weights(tmp, "pair-1"), tolerance=0.0)
    chief, worker = (tmp / "pair-0.log").read_text(), (tmp / "pair-1.log").read_text()
    assert '"worker": null' in chief and '"worker": 1' in worker
    # only the chief writes the run; each worker decoded its own half of the images
    assert (tmp / "pair" / "done.json").is_file() and not (tmp / "pair" / "workers").exists()
    done = json.loads((tmp / "pair" / "done.json").read_text())
    reference = json.loads((tmp / "one" / "done.json").read_text())
    # the weights agree to float rounding (above), so do the continuous metrics (ECE)
    assert done["metrics"].keys() == reference["metrics"].keys()
    for key, value in reference["metrics"].items():
        assert done["metrics"][key] == (value if value is None else
                                        pytest.approx(value, rel=1e-6, abs=1e-9)), key
    assert done["distribute"] == {"strategy": "multi_worker", "workers": 2, "replicas": 2}


@pytest.mark.slow
def test_a_killed_worker_and_its_cluster_resume_with_nothing_lost(full_batch_reference,
                                                                  phantoms):
    """Worker 1 is killed (SIGKILL) after epoch 2's step, before its checkpoint; the chief
    stops with one clear line; both started again with --resume end with the weights of the
    uninterrupted single-process run."""
    tmp, settings = full_batch_reference
    settings = {**settings, "training": {**settings["training"], "distribute": "multi_worker"}}
    out = tmp / "killed"
    cluster = run_cluster(tmp, "killed", settings, out, phantoms, "--epoch-pause", "3")
    log = tmp / "killed-1.log"
    deadline = time.monotonic() + TIMEOUT
    while "Epoch 2/3" not in log.read_text() and time.monotonic() < deadline:
        assert cluster[1].poll() is None, log.read_text()[-2000:]
        time.sleep(0.2)
    while "1/1" not in log.read_text().split("Epoch 2/3")[-1] and time.monotonic() < deadline:
        time.sleep(0.1)  # epoch 2 trained, its 3 s pause before the checkpoint begins
    cluster[1].send_signal(signal.SIGKILL)
    cluster[1].wait(timeout=30)
    assert cluster[0].wait(timeout=TIMEOUT) != 0
    chief = (tmp / "killed-0.log").read_text()
    assert "another worker of the cluster stopped" in chief and "--resume" in chief
    assert TrainingState.read(out / "checkpoints").epoch >= 1
    assert TrainingState.read(out / "workers" / "worker-1" / "checkpoints").epoch == 1
    resumed = run_cluster(tmp, "resumed", settings, out, phantoms, "--resume")
    for index, process in enumerate(resumed):
        finish(process, tmp, f"resumed-{index}")
    assert_same_weights(weights(tmp, "one"), weights(tmp, "resumed-0"))
    history = (out / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]


# --- the pieces -----------------------------------------------------------------------------

def test_shards_split_every_class_evenly_and_cover_each_record_once():
    records = [f"image-{index}" for index in range(11)]
    keys = ["benign", "malignant", "normal", "benign", "normal", "normal", "benign", "normal",
            "malignant", "normal", "benign"]
    shards = [shard_records(records, keys, worker, 3) for worker in range(3)]
    assert sorted(sum(shards, [])) == sorted(records)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    for name in set(keys):
        per_worker = [sum(keys[records.index(item)] == name for item in shard)
                      for shard in shards]
        assert max(per_worker) - min(per_worker) <= 1


@pytest.mark.parametrize("tf_config, expected", [
    ({"cluster": {"worker": ["a:1", "b:2", "c:3"]}, "task": {"type": "worker", "index": 2}},
     (2, 3)),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}},
     (0, 2)),
    ({"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}},
     (1, 2)),
])
def test_tf_config_gives_the_worker_index_with_the_chief_first(monkeypatch, tf_config,
                                                                expected):
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert _task_of_tf_config() == expected


@pytest.mark.parametrize("text, message", [
    (None, "needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not a cluster"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "'ps' is not"),
])
def test_a_missing_or_bad_tf_config_is_one_clear_error(monkeypatch, text, message):
    if text is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(ConfigError, match=message):
        make_cluster("multi_worker")


def test_distribute_is_checked_with_the_config():
    with pytest.raises(ConfigError, match="training.distribute must be one of"):
        resolve_config({"training": {"distribute": "tpu"}})
    with pytest.raises(ConfigError, match="gradient_accumulation does not combine"):
        resolve_config({"training": {"distribute": "mirrored", "gradient_accumulation": 2}})
    with pytest.raises(ConfigError, match="linear_probe fits its head on one device"):
        resolve_config({"training": {"distribute": "mirrored", "scenario": "linear_probe"}})


def test_a_cluster_commit_keeps_the_previous_epoch_until_released(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    state = TrainingState(config_hash="x")
    for epoch in (1, 2):
        state.epoch = epoch
        state.commit(tmp_path, model, keep_previous=True)
    assert TrainingState.read(tmp_path).epoch == 2
    assert TrainingState.read(tmp_path, 1).checkpoint == "last-0001.keras"
    assert (tmp_path / "last-0001.keras").is_file()
    state.release_previous(tmp_path)
    assert not (tmp_path / "last-0001.keras").exists()
    with pytest.raises(Exception, match="no checkpoint of epoch 1"):
        TrainingState.read(tmp_path, 1)


def test_centres_from_reduced_sums_equal_the_centres_of_the_whole_batch(rng):
    """Two replicas' class sums and counts, summed, move the centres as the whole batch does."""
    loss = FeatureSmoothingLoss(momentum=0.9)
    labels = np.array([0, 1, 2, 0, 0, 1, 2, 2])
    onehot = np.eye(3, dtype="float32")[labels]
    embedding = rng.normal(size=(8, 5)).astype("float32")
    centres = rng.normal(size=(3, 5)).astype("float32")
    seen = np.array([1.0, 0.0, 1.0], "float32")
    whole = loss.updated_centres(onehot, embedding, centres, seen)
    halves = [loss.class_sums(onehot[part], embedding[part]) for part in (slice(0, 4),
                                                                          slice(4, 8))]
    totals = iter([halves[0][0] + halves[1][0], halves[0][1] + halves[1][1]])
    reduced = loss.updated_centres(onehot[:4], embedding[:4], centres, seen,
                                   reduce=lambda value: next(totals))
    for a, b in zip(whole, reduced):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b),
                                   rtol=1e-6, atol=1e-6)
    # the reference: an EMA step towards the class means of all 8 images
    means = np.stack([embedding[labels == k].mean(axis=0) for k in range(3)])
    expected = np.where(seen[:, None] > 0, 0.9 * centres + 0.1 * means, means)
    np.testing.assert_allclose(ops.convert_to_numpy(whole[0]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("fixes", [False, True])
def test_keras_multi_worker_fit_needs_the_workarounds(tmp_path, fixes):
    """Keras' own fit fails under MultiWorkerMirroredStrategy (its symbolic build reduces a
    batch in eager; keras-team/keras issue 20585 on scalar metrics) and trains with
    `keras_distribute_fixes`. When the first case starts to pass, Keras is fixed: drop the
    override."""
    ports = free_ports(2)
    processes = []
    for index in range(2):
        environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CONFIG": json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "keras_multi_worker_probe.py"),
             *(["--fixes"] if fixes else [])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=environment, cwd=ROOT, text=True))
    outputs = [process.communicate(timeout=TIMEOUT)[0] for process in processes]
    verdicts = [line for output in outputs for line in output.splitlines()
                if line.startswith("FIT ")]
    assert len(verdicts) == 2, outputs
    if fixes:
        assert verdicts == ["FIT OK", "FIT OK"], verdicts
    else:
        assert all(verdict.startswith("FIT FAILED") for verdict in verdicts), verdicts
