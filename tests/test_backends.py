"""Model code is `keras.ops` only: it runs, and trains, on Keras' PyTorch and JAX backends too.

Each check compares the other backend with TensorFlow computing the same thing in this process:
saved models predict the same, one SGD step of the Feature Smoothing Loss moves the weights the
same way, and `mammo-keras train --backend B` trains the classifier and the toy two-output task
from a YAML file. PyTorch and JAX are optional extras (`pip install -e ".[torch,jax]"`, torch
pinned to its CPU build); without one its checks are skipped with that reason. Each check runs
in a subprocess because Keras fixes its backend when keras is first imported.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from mammo_keras import cli
from mammo_keras.models import build_classifier, describe, with_logits

ROOT = Path(__file__).resolve().parents[1]


def _needs(package: str, extra: str):
    return pytest.mark.skipif(importlib.util.find_spec(package) is None,
                              reason=f"the {package} backend needs the optional extra: "
                                     f"pip install -e '.[{extra}]'")


BACKENDS = [pytest.param("torch", marks=_needs("torch", "torch"), id="torch"),
            pytest.param("jax", marks=_needs("jax", "jax"), id="jax")]


def run_on_backend(backend: str, script: str, cwd: Path, **environment: str) -> dict:
    """The last stdout line (JSON) of `script` run with KERAS_BACKEND=`backend`."""
    env = {**os.environ, **environment, "KERAS_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


CASES = {"baseline_cnn_gagm_se": ("baseline_cnn", 32), "convnext_tiny_gagm": ("convnext_tiny", 32),
         "inception_v3_gap": ("inception_v3", 75)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("names", [
    pytest.param(("baseline_cnn_gagm_se", "convnext_tiny_gagm"), id="ours"),
    # keras.applications' own layers only, and the slowest to build: `pytest -m slow`
    pytest.param(("inception_v3_gap",), marks=pytest.mark.slow, id="inception")])
def test_saved_models_predict_the_same_probabilities_and_logits(backend, names, tmp_path):
    cases = {name: CASES[name] for name in names}
    expected = {}
    for name, (backbone, size) in cases.items():
        model = build_classifier(backbone, name.split(f"{backbone}_")[1], 3, (size, size, 1))
        describe(model, task="density", class_names=("A", "B", "C"))
        x = np.random.default_rng(size).uniform(size=(3, size, size, 1)).astype("float32")
        np.save(tmp_path / f"{name}.npy", x)
        model.save(tmp_path / f"{name}.keras")
        expected[name] = with_logits(model).predict(x, verbose=0)
    got = run_on_backend(backend, f"""
        import json, numpy as np, keras
        from mammo_keras.models import description_of, with_logits
        assert keras.backend.backend() == {backend!r}
        out = {{}}
        for name in {sorted(cases)!r}:
            model = keras.saving.load_model(name + ".keras")
            x = np.load(name + ".npy")
            both = with_logits(model).predict(x, verbose=0)
            out[name] = {{key: value.tolist() for key, value in both.items()}}
            out[name]["classes"] = list(description_of(model).class_names)
        print(json.dumps(out))
    """, tmp_path)
    for name, reference in expected.items():
        assert got[name]["classes"] == ["A", "B", "C"], name
        for key, values in reference.items():
            np.testing.assert_allclose(np.asarray(got[name][key]), values, atol=2e-5,
                                       err_msg=f"{name} {key}")


ONE_STEP = """
import json, numpy as np, keras
from mammo_keras.losses import FeatureSmoothingLoss
from mammo_keras.models import FeatureSmoothingModel
trainer = FeatureSmoothingModel(keras.saving.load_model("start.keras"),
                                FeatureSmoothingLoss(lam=0.1, label_smoothing=0.1))
trainer.compile(optimizer=keras.optimizers.SGD(0.05))
history = trainer.fit(np.load("x.npy"), np.load("y.npy"), batch_size=12, epochs=1,
                      shuffle=False, verbose=0).history
print(json.dumps({"history": history, "names": [w.path for w in trainer.weights],
                  "weights": [w.tolist() for w in trainer.get_weights()]}))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_feature_smoothing_step_moves_the_weights_as_on_tensorflow(backend, tmp_path):
    """One SGD step of cross-entropy + FSL through GAGM, SEVector and BatchNorm: the same
    loss, class centres and weights as TensorFlow's from the same start.

    TensorFlow runs with its oneDNN kernels off (importing mammo_keras turns them on, for
    speed): they round differently (1e-5 relative on one Conv + BatchNorm layer, measured),
    and through ten of them at batch 12 this step's first-layer weights then differ from
    TensorFlow's plain kernels, JAX's and PyTorch's by up to 1.6e-3 (those three agree to
    1e-5). One step: after a second,
    round-off of 1e-6 has flipped a few max-pool and ReLU choices and the backends drift
    apart by about 1 % of an update, differently on each.
    """
    keras.utils.set_random_seed(0)
    classifier = build_classifier("baseline_cnn", "gagm_se", 3, (32, 32, 1), dropout=0.0)
    classifier.save(tmp_path / "start.keras")
    np.save(tmp_path / "x.npy",
            np.random.default_rng(0).uniform(size=(12, 32, 32, 1)).astype("float32"))
    np.save(tmp_path / "y.npy", np.arange(12) % 3)
    ours = run_on_backend("tensorflow", ONE_STEP, tmp_path, TF_ENABLE_ONEDNN_OPTS="0")
    theirs = run_on_backend(backend, ONE_STEP, tmp_path)
    assert set(theirs["history"]) == set(ours["history"]) == {"loss", "cross_entropy",
                                                               "feature_smoothing"}
    for key, values in ours["history"].items():
        np.testing.assert_allclose(theirs["history"][key], values, rtol=1e-5, err_msg=key)
    assert theirs["names"] == ours["names"]
    start = classifier.get_weights()
    moved = [not np.allclose(ours["weights"][ours["names"].index(w.path)], value)
             for w, value in zip(classifier.weights, start)]
    assert sum(moved) > len(moved) // 2  # the step changed most of the weights
    for name, a, b in zip(ours["names"], theirs["weights"], ours["weights"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-5,
                                   err_msg=name)


TINY_RUN = {"data": {"synthetic": {"count": 24, "size": 256}, "image_size": 32,
                     "split": [0.5, 0.25, 0.25]},
            "training": {"epochs": 2, "batch_size": 4, "tensorboard": False,
                         "deterministic": True},
            "evaluation": {"resamples": 0}}


@pytest.mark.parametrize("task, backend", [
    pytest.param(task, backend, id=f"{task}-{backend}",
                 # 74 s on 2 cores; FSL on JAX is checked step by step above
                 marks=[_needs(backend, backend)] + ([pytest.mark.slow] if (task, backend) ==
                                                     ("malignancy_fsl", "jax") else []))
    for task in ("malignancy_fsl", "toy_two_outputs") for backend in ("torch", "jax")])
def test_train_command_trains_on_the_backend(backend, task, tmp_path, monkeypatch):
    config = {"name": task, **TINY_RUN}
    if task == "malignancy_fsl":
        config["training"] = {**config["training"], "fsl_lambda": 0.1}
    else:
        config["data"] = {**config["data"], "task": "tests.toy_task:ToyMaskTask"}
        config["model"] = {"builder": "tests.toy_task:build", "width": 4}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(path), "--out", str(out),
                     "--backend", backend, "--trust-code"]) == 0
    done = json.loads((out / "done.json").read_text())
    assert done["epochs_run"] == 2 and done["images"] == {"train": 12, "val": 6, "test": 6}
    history = list(csv.DictReader(open(out / "history.csv")))
    assert all(np.isfinite(float(row["loss"])) for row in history)
    # trained on the other backend, the model loads and predicts here on TensorFlow
    model = keras.saving.load_model(out / "model.keras")
    outputs = model(np.zeros((1, 32, 32, 1), np.float32))
    label = outputs["label"] if isinstance(outputs, dict) else outputs
    np.testing.assert_allclose(np.sum(keras.ops.convert_to_numpy(label)), 1.0, rtol=1e-5)


HDS_STEP = """
import json, numpy as np, keras
from mammo_keras.losses import HybridDeepSupervisionLoss
from mammo_keras.models import DeepSupervisionModel
unet = keras.saving.load_model("hds.keras")
x, masks = np.load("x.npy"), np.load("masks.npy")
outputs = unet.predict(x, verbose=0)
trainer = DeepSupervisionModel(unet, HybridDeepSupervisionLoss(pixel_loss="dice_ce", epochs=3))
trainer.set_epoch(1)
trainer.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=False)
logs = trainer.train_on_batch(x, {"label": np.array([1, 0, 1, 0]), "mask": masks},
                              return_dict=True)
print(json.dumps({"outputs": {k: np.asarray(v).tolist() for k, v in outputs.items()},
                  "loss": float(logs["loss"]),
                  "weights": [w.tolist() for w in unet.get_weights()]}))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_hds_unet_predicts_and_trains_one_step_as_on_tensorflow(backend, tmp_path):
    """The HDS U-Net (every exit, MIL and max-pixel pooling) and one SGD step of its hybrid
    deep-supervision loss (DiceCE + sparse MIL, decayed exit weights) on the other backend.

    Outputs and loss agree to 1e-4. The step's weights agree to 3 % of the largest update: this
    small U-Net (batch statistics of 4 images, 22 BatchNorm layers deep) amplifies round-off
    so much that TensorFlow with and without its oneDNN kernels already differs by 1.5 % of
    the update in the stem (measured: 0.0066 on an update of 0.43; JAX vs PyTorch 0.0014)."""
    from mammo_keras.models import build_hds_unet

    keras.utils.set_random_seed(0)
    unet = build_hds_unet((64, 64, 1), widths=(4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 4), mil_stride=32,
                          dropout=0.0)
    unet.save(tmp_path / "hds.keras")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.uniform(size=(4, 64, 64, 1)).astype("float32"))
    masks = np.zeros((4, 64, 64, 1), np.float32)
    masks[0, 10:30, 10:20] = masks[2, 40:50, 30:60] = 1
    np.save(tmp_path / "masks.npy", masks)
    ours = run_on_backend("tensorflow", HDS_STEP, tmp_path, TF_ENABLE_ONEDNN_OPTS="0")
    theirs = run_on_backend(backend, HDS_STEP, tmp_path)
    assert set(theirs["outputs"]) == set(ours["outputs"])
    for name, value in ours["outputs"].items():
        np.testing.assert_allclose(theirs["outputs"][name], value, rtol=1e-4, atol=2e-5,
                                   err_msg=name)
    assert theirs["loss"] == pytest.approx(ours["loss"], rel=1e-4)
    start = unet.get_weights()
    updates = [np.abs(np.asarray(b) - before).max() for b, before in zip(ours["weights"], start)]
    differences = [np.abs(np.asarray(a) - np.asarray(b)).max()
                   for a, b in zip(theirs["weights"], ours["weights"], strict=True)]
    assert sum(update > 1e-6 for update in updates) > len(start) // 2
    assert max(differences) <= 0.03 * max(updates)
