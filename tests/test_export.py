"""Export: SavedModel and TFLite for every backbone x head, parity, signatures, predict, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from mammo_keras import cli
from mammo_keras.data import generate_phantom, preprocess, synthetic_specs
from mammo_keras.export import (ExportParityError, check_parity, export_model, load_predictor)
from mammo_keras.models import build_classifier
from mammo_keras.models.backbones import BACKBONES
from mammo_keras.models.classifier import HEADS
from mammo_keras.predict import predict_files

MIN_SIZE = {"inception_v3": 75}


def saved_classifier(folder: Path, backbone: str = "baseline_cnn", head: str = "gagm_se",
                     size: int = 32) -> Path:
    keras.utils.set_random_seed(1)
    model = build_classifier(backbone, head, num_classes=3, input_shape=(size, size, 1))
    path = folder / f"{backbone}_{head}.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A baseline CNN fitted for a few epochs on 32 px phantoms: confident, not uniform, outputs."""
    folder = tmp_path_factory.mktemp("trained")
    specs = synthetic_specs(48, seed=3, size=256)
    images = np.stack([preprocess(generate_phantom(spec)[0], 32)[0].numpy() for spec in specs])
    labels = np.array([("normal", "benign", "malignant").index(spec.label) for spec in specs])
    keras.utils.set_random_seed(0)
    model = build_classifier("baseline_cnn", "gap", num_classes=3, input_shape=(32, 32, 1),
                             dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=15, batch_size=16, verbose=0)
    model.save(folder / "model.keras")
    return folder / "model.keras"


def _matrix():
    """Every backbone x head; the large backbones' gap / gagm heads (a minute each on 2 cores,
    the same export path as their gagm_se), InceptionV3 (84 s) and ConvNeXt-Base (106 s; the
    same keras.applications route as ConvNeXt-Tiny) are left to `pytest -m slow`."""
    for backbone in sorted(BACKBONES):
        for head in HEADS:
            slow = (backbone != "baseline_cnn" and head != "gagm_se") or \
                backbone in ("inception_v3", "convnext_base")
            yield pytest.param(backbone, head, marks=[pytest.mark.slow] if slow else [],
                               id=f"{backbone}-{head}")


@pytest.mark.parametrize("backbone, head", list(_matrix()))
def test_every_backbone_and_head_exports_with_parity(tmp_path, backbone, head):
    path = saved_classifier(tmp_path, backbone, head, MIN_SIZE.get(backbone, 32))
    result = export_model(path, tmp_path / "export", "all", samples=4)
    assert sorted(Path(p).name for p in result) == ["1", "model.tflite"]
    for artefact, meta in result.items():
        assert meta["parity"]["max_abs_difference"] <= 1e-4, artefact
        assert meta["parity"]["sample"] == "4 synthetic phantoms"
        assert meta["class_names"] == ["normal", "benign", "malignant"]
        assert meta["input"]["size"][0] == MIN_SIZE.get(backbone, 32)
        written = json.loads(Path(meta["artefact"] + ".json" if meta["format"] == "savedmodel"
                                  else Path(meta["artefact"]).with_suffix(".json")).read_text())
        assert written == meta


def test_savedmodel_serves_raw_and_png_alike_without_mammo_keras(tmp_path, trained):
    export_model(trained, tmp_path, "savedmodel", samples=8)
    phantom = generate_phantom(synthetic_specs(1, seed=9, size=256)[0])[0]
    pixels = np.round(phantom * 65535).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    (tmp_path / "case.png").write_bytes(buffer.getvalue())
    np.save(tmp_path / "case.npy", pixels.astype(np.float32) / 65535)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({str(tmp_path / "savedmodel")!r} + "/1")
        raw = model.signatures["serving_default"](
            images=tf.constant(np.load({str(tmp_path / "case.npy")!r})[None]))
        png = model.signatures["serve_png"](
            png=tf.constant([open({str(tmp_path / "case.png")!r}, "rb").read()]))
        print(json.dumps({{"raw": raw["probabilities"].numpy().tolist(),
                          "png": png["probabilities"].numpy().tolist(),
                          "prediction": png["prediction"].numpy()[0].decode(),
                          "class_names": [c.decode() for c in raw["class_names"].numpy()],
                          "mammo_keras_loaded": "mammo_keras" in sys.modules}}))
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               cwd=tmp_path, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    served = json.loads(completed.stdout.strip().splitlines()[-1])
    assert not served["mammo_keras_loaded"]
    assert served["class_names"] == ["normal", "benign", "malignant"]
    np.testing.assert_allclose(served["raw"], served["png"], atol=1e-6)
    model = keras.saving.load_model(trained)
    expected = keras.ops.convert_to_numpy(model(preprocess(pixels / 65535.0, 32)[0][None]))
    np.testing.assert_allclose(served["raw"], expected, atol=1e-5)
    assert served["prediction"] == ["normal", "benign", "malignant"][int(expected.argmax())]


def test_serving_graph_windows_and_scales_12_bit_pngs_as_training_does(tmp_path, trained):
    """A model trained with the intensity window: `serving_default` on the raw image and
    `serve_png` on a 16-bit PNG holding 12-bit values (a digital detector's file) both give
    the Keras model's output on `read_image` + `preprocess(window=True)`."""
    import tensorflow as tf

    from mammo_keras.data import read_image
    from mammo_keras.devtools.crop_testset import make_case
    from mammo_keras.export.savedmodel import export_savedmodel

    model = keras.saving.load_model(trained)
    options = {"crop": True, "flip": True, "window": True, "equalize": False}
    target = export_savedmodel(model, tmp_path / "savedmodel", ["normal", "benign", "malignant"],
                               options)
    case = make_case(5, "presentation", "C", "MLO", "R", size=320)
    path = tmp_path / "digital_12bit.png"
    Image.fromarray(np.round(case.image * 4095).astype(np.uint16)).save(path)
    image, meta = read_image(path)
    assert meta["bits_stored"] == 12 and image.max() == 1.0
    served = tf.saved_model.load(str(target))
    raw = served.signatures["serving_default"](images=tf.constant(image[None]))
    png = served.signatures["serve_png"](png=tf.constant([path.read_bytes()]))
    expected = keras.ops.convert_to_numpy(model(preprocess(image, 32, window=True)[0][None]))
    np.testing.assert_allclose(raw["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(png["probabilities"].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("quantize", ["dynamic", "float16", "int8"])
def test_quantised_tflite_keeps_top1_agreement(tmp_path, trained, quantize):
    result = export_model(trained, tmp_path, "tflite", quantize, samples=24)
    (meta,) = result.values()
    assert meta["quantization"] == quantize and meta["artefact"].endswith(f"_{quantize}.tflite")
    parity = meta["parity"]
    assert parity["top1_agreement"] >= 0.98 and parity["criterion"].startswith("top-1")
    assert parity["roc_auc_macro_change"] == pytest.approx(
        parity["roc_auc_macro_exported"] - parity["roc_auc_macro_keras"])
    # the sample has labels, so the AUC is computed; a 32 px model fitted on 48 phantoms is
    # not expected to generalise, so its value is not a criterion
    assert 0.0 <= parity["roc_auc_macro_keras"] <= 1.0
    size = Path(meta["artefact"]).stat().st_size
    float_size = Path(export_model(trained, tmp_path / "f32", "tflite").popitem()[0]).stat().st_size
    assert size < 0.6 * float_size  # weights stored in 8 or 16 bits


def test_predict_gives_the_same_classes_in_every_format(tmp_path, trained, capsys):
    export_model(trained, tmp_path / "export", "all", samples=8)
    export_model(trained, tmp_path / "export", "tflite", "int8", samples=24)
    images = tmp_path / "images"
    images.mkdir()
    for index, spec in enumerate(synthetic_specs(6, seed=5, size=256)):
        phantom = generate_phantom(spec)[0]
        Image.fromarray(np.round(phantom * 65535).astype(np.uint16)).save(images / f"{index}.png")
    results = {}
    for name in ("model.keras", "export/savedmodel", "export/model.tflite",
                 "export/model_int8.tflite"):
        source = trained if name == "model.keras" else tmp_path / name
        rows, skipped = predict_files(load_predictor(source), [images])
        assert not skipped and len(rows) == 6
        results[name] = rows
    reference = results["model.keras"]
    for name, rows in results.items():
        assert [row["prediction"] for row in rows] == [row["prediction"] for row in reference]
        if "int8" not in name:
            np.testing.assert_allclose([row["p_malignant"] for row in rows],
                                       [row["p_malignant"] for row in reference], atol=1e-4)
    assert cli.main(["predict", str(tmp_path / "export" / "savedmodel"), str(images), "--out",
                     str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == \
        "path,prediction,p_normal,p_benign,p_malignant,note"
    capsys.readouterr()
    assert cli.main(["predict", str(tmp_path / "export" / "model.tflite"), "--data", str(images),
                     "--out", str(tmp_path / "q.csv")]) == 0  # the data as an option, too
    printed = capsys.readouterr()
    assert "predicting: 6 / 6" in printed.err  # progress, also off a terminal
    assert "deprecated" not in printed.err and "scheduled for deletion" not in printed.err
    assert len((tmp_path / "q.csv").read_text().splitlines()) == 7


def test_check_parity_enforces_the_tolerances():
    reference = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    labels = np.array([0, 1, 2, 0])
    assert check_parity(reference, reference + 5e-5, "none", labels, "a")["top1_agreement"] == 1
    with pytest.raises(ExportParityError, match=r"a: probabilities differ .* by up to 2\.00e-04"):
        check_parity(reference, reference + 2e-4, "none", labels, "a")
    flipped = reference.copy()
    flipped[3] = [0.2, 0.5, 0.3]
    with pytest.raises(ExportParityError, match=r"int8 quantization keeps top-1 agreement "
                                                r"0\.750 \(< 0\.98\) on 4 images, macro AUC"):
        check_parity(reference, flipped, "int8", labels, "b")
    with pytest.raises(ExportParityError, match="non-finite"):
        check_parity(reference, reference * np.nan, "dynamic", labels, "c")


def test_export_errors_are_clear(tmp_path, capsys):
    class Mystery(keras.layers.Layer):  # not registered: cannot be deserialised
        def call(self, inputs):
            return inputs

    inputs = keras.Input((32, 32, 1))
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(Mystery()(inputs)))
    keras.Model(inputs, outputs).save(tmp_path / "mystery.keras")
    with pytest.raises(ValueError, match=r"mystery\.keras: cannot be loaded as a Keras model"):
        export_model(tmp_path / "mystery.keras", tmp_path / "out")
    flat_in = keras.Input((16,))
    keras.Model(flat_in, keras.layers.Dense(3, activation="softmax")(flat_in)).save(
        tmp_path / "flat.keras")
    with pytest.raises(ValueError, match=r"takes \(None, 16\); export needs one square "
                                         r"grayscale input"):
        export_model(tmp_path / "flat.keras", tmp_path / "out")
    assert cli.main(["export", str(tmp_path / "flat.keras"), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert "export needs one square grayscale input" in error and "\n" not in error
    assert cli.main(["export", str(tmp_path / "none.keras"), "--out", str(tmp_path / "o")]) == 2
    assert "none.keras: model file not found" in capsys.readouterr().err


def _relabelled_other_model(trained: Path, path: Path) -> Path:
    """The trained model with its logits negated (other outputs) and classes reversed."""
    from mammo_keras.models import describe

    model = keras.saving.load_model(trained)
    logits = model.get_layer("logits")
    logits.set_weights([-weight for weight in logits.get_weights()])
    describe(model, class_names=("malignant", "benign", "normal"))
    model.save(path)
    return path


def test_a_killed_re_export_leaves_the_old_artefacts_whole(tmp_path, trained, monkeypatch):
    """A re-export killed at its parity check (SIGKILL stand-in: an exception nothing
    catches) publishes nothing: each old artefact loads with its own classes and outputs."""
    from mammo_keras.export import exporter

    out = tmp_path / "export"
    export_model(trained, out, samples=8)
    images = np.random.default_rng(0).uniform(size=(4, 32, 32, 1)).astype("float32")
    before = {name: load_predictor(out / name) for name in ("savedmodel", "model.tflite")}
    expected = {name: predictor(images) for name, predictor in before.items()}
    other = _relabelled_other_model(trained, tmp_path / "other.keras")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    for format in ("savedmodel", "tflite"):
        monkeypatch.setattr(exporter, "check_parity", killed)
        with pytest.raises(KeyboardInterrupt):
            export_model(other, out, fmt=format, samples=8)
        monkeypatch.undo()
        for name, probabilities in expected.items():
            predictor = load_predictor(out / name)
            assert predictor.class_names == ("normal", "benign", "malignant"), (format, name)
            np.testing.assert_allclose(predictor(images), probabilities, atol=1e-6)
    assert sorted(path.name for path in out.iterdir()) == ["model.json", "model.tflite",
                                                           "savedmodel"]
    # finished, the re-export replaces both with the new weights and their own names
    result = export_model(other, out, samples=8)
    for name in ("savedmodel", "model.tflite"):
        predictor = load_predictor(out / name)
        assert predictor.class_names == ("malignant", "benign", "normal")
        assert not np.allclose(predictor(images), expected[name], atol=1e-3)
    assert all("artefact_sha256" in meta for meta in result.values())


def test_metadata_that_belongs_to_other_weights_is_refused(tmp_path, trained):
    import shutil

    from mammo_keras.errors import UserError
    from mammo_keras.export.tflite import tflite_bytes

    first, second = tmp_path / "first", tmp_path / "second"
    export_model(trained, first, samples=8)
    export_model(_relabelled_other_model(trained, tmp_path / "other.keras"), second, samples=8)
    # the second export's weights under the first's own metadata asset: its hash differs
    version = first / "savedmodel" / "1"
    shutil.rmtree(version / "variables")
    shutil.copytree(second / "savedmodel" / "1" / "variables", version / "variables")
    with pytest.raises(UserError, match="mammo_keras.json: this metadata belongs to another "
                                        "export"):
        load_predictor(first / "savedmodel")
    # a TFLite file without metadata inside, beside the JSON of another export
    model = keras.saving.load_model(tmp_path / "other.keras")
    (first / "model.tflite").write_bytes(tflite_bytes(model))
    with pytest.raises(UserError, match="model.json: this metadata belongs to another export"):
        load_predictor(first / "model.tflite")


def test_an_export_killed_earlier_leaves_no_staging_behind(tmp_path, trained):
    out = tmp_path / "export"
    stale = out / ".export-staging.999999999"  # a process id no process has
    (stale / "savedmodel").mkdir(parents=True)
    export_model(trained, out, fmt="tflite", samples=8)
    assert sorted(path.name for path in out.iterdir()) == ["model.json", "model.tflite"]


def test_metadata_that_disagrees_with_the_graph_or_its_other_copy_is_refused(tmp_path, trained):
    """Reordered class names in a metadata file would relabel every prediction: where two
    copies of a fact exist (graph and asset, asset and the JSON beside), a mismatch refuses."""
    from mammo_keras.errors import UserError
    from mammo_keras.export.savedmodel import METADATA_ASSET

    export_model(trained, tmp_path / "export", samples=8)
    version = tmp_path / "export" / "savedmodel" / "1"
    (tmp_path / "export" / "savedmodel" / "1.json").unlink()  # the folder deployed alone
    asset = version / METADATA_ASSET
    metadata = json.loads(asset.read_text())
    original = metadata["class_names"]
    metadata["class_names"] = original[::-1]  # "malignant" first: would read as "normal"
    asset.write_text(json.dumps(metadata))
    with pytest.raises(UserError, match=r"the metadata's class names \['malignant', 'benign', "
                                        r"'normal'\] are not the graph's own"):
        load_predictor(tmp_path / "export" / "savedmodel")
    metadata["class_names"] = original
    asset.write_text(json.dumps(metadata))
    load_predictor(tmp_path / "export" / "savedmodel")  # restored: accepted
    beside = tmp_path / "export" / "model.json"
    edited = json.loads(beside.read_text())
    edited["class_names"] = original[::-1]
    beside.write_text(json.dumps(edited))
    with pytest.raises(UserError, match=r"model.json: its class_names .* disagree with the copy "
                                        r"inside model.tflite"):
        load_predictor(tmp_path / "export" / "model.tflite")


def test_the_serving_signatures_guard_their_inputs(tmp_path, trained):
    """Raw 12-bit values, a blank film, non-finite values and a 1 x 1 PNG get a status and
    no answer (NaN probabilities, empty prediction), as the readers would refuse them; a
    good film in the same batch is answered as before."""
    import tensorflow as tf

    export_model(trained, tmp_path, "savedmodel", samples=8)
    served = tf.saved_model.load(str(tmp_path / "savedmodel" / "1"))
    phantom = generate_phantom(synthetic_specs(1, seed=9, size=256)[0])[0].astype(np.float32)
    broken = phantom.copy()
    broken[10, 10] = np.nan
    batch = np.stack([phantom, np.round(phantom * 4095), np.full_like(phantom, 0.4), broken])
    raw = served.signatures["serving_default"](images=tf.constant(batch))
    status = [s.decode() for s in raw["status"].numpy()]
    assert status[0] == "ok"
    assert status[1].startswith("values outside [0, 1]: raw detector values?")
    assert status[2] == "blank image: one value everywhere"
    assert status[3] == "values that are not finite numbers"
    probabilities = raw["probabilities"].numpy()
    assert np.all(np.isfinite(probabilities[0])) and np.all(np.isnan(probabilities[1:]))
    assert [p.decode() for p in raw["prediction"].numpy()][1:] == ["", "", ""]
    model = keras.saving.load_model(trained)
    expected = keras.ops.convert_to_numpy(model(preprocess(phantom, 32)[0][None]))[0]
    np.testing.assert_allclose(probabilities[0], expected, atol=1e-5)
    tiny = io.BytesIO()
    Image.fromarray(np.array([[200]], np.uint8)).save(tiny, format="PNG")
    png = served.signatures["serve_png"](png=tf.constant([tiny.getvalue()]))
    assert png["status"].numpy()[0].decode() == "image smaller than 16 px on a side: not a " \
        "mammogram" and np.all(np.isnan(png["probabilities"].numpy()))
