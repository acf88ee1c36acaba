"""Model code is `keras.ops` only: models saved on TensorFlow run identically on Keras' PyTorch backend.

PyTorch is an optional extra (`pip install -e ".[torch]"`, pinned to a CPU build); without it
these tests are skipped with that reason. Each check runs in a subprocess because the Keras
backend is fixed when keras is first imported.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mammo_keras.models import build_classifier

pytest.importorskip("torch", reason="PyTorch backend check needs the optional extra: "
                                    "pip install -e '.[torch]'")


def run_on_torch_backend(script: str, tmp_path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_saved_models_predict_the_same_on_the_pytorch_backend(tmp_path):
    cases = {"baseline_cnn_gagm_se": ("baseline_cnn", 32), "convnext_tiny_gagm": ("convnext_tiny", 32),
             "inception_v3_gap": ("inception_v3", 75)}
    expected = {}
    for name, (backbone, size) in cases.items():
        model = build_classifier(backbone, name.split(f"{backbone}_")[1], 3, (size, size, 1))
        x = np.random.default_rng(size).uniform(size=(3, size, size, 1)).astype("float32")
        np.save(tmp_path / f"{name}.npy", x)
        model.save(tmp_path / f"{name}.keras")
        expected[name] = model.predict(x, verbose=0)
    got = run_on_torch_backend(f"""
        import json, numpy as np, keras, mammo_keras
        assert keras.backend.backend() == "torch"
        out = {{}}
        for name in {sorted(cases)!r}:
            model = keras.saving.load_model(name + ".keras")
            out[name] = model.predict(np.load(name + ".npy"), verbose=0).tolist()
        print(json.dumps(out))
    """, tmp_path)
    for name, probabilities in expected.items():
        np.testing.assert_allclose(np.asarray(got[name]), probabilities, atol=1e-5, err_msg=name)


def test_feature_smoothing_trains_on_the_pytorch_backend(tmp_path):
    got = run_on_torch_backend("""
        import json, numpy as np, keras
        from mammo_keras.losses import FeatureSmoothingLoss
        from mammo_keras.models import FeatureSmoothingModel, build_classifier
        keras.utils.set_random_seed(0)
        classifier = build_classifier("baseline_cnn", "gagm_se", 3, (32, 32, 1))
        trainer = FeatureSmoothingModel(classifier, FeatureSmoothingLoss(lam=0.1))
        trainer.compile(optimizer="adam", metrics=["accuracy"])
        x = np.random.default_rng(0).uniform(size=(12, 32, 32, 1)).astype("float32")
        history = trainer.fit(x, np.arange(12) % 3, batch_size=6, epochs=2, verbose=0).history
        seen = keras.ops.convert_to_numpy(trainer.centre_seen).tolist()
        print(json.dumps({"history": history, "seen": seen}))
    """, tmp_path)
    assert got["seen"] == [1.0, 1.0, 1.0]
    assert set(got["history"]) == {"loss", "cross_entropy", "feature_smoothing", "accuracy"}
    assert all(np.isfinite(got["history"]["loss"]))
