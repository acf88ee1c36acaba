"""HDS (Zhang 2018): the residual U-Net against the authors' structure in PyTorch, its losses
against NumPy, mass records from real MIAS, segmentation / detection metrics by hand, and the
lesion_segmentation task trained from YAML through the command line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from mammo_keras import cli
from mammo_keras.data import load_records
from mammo_keras.data.lesions import lesion_records
from mammo_keras.data.records import ROI, Record
from mammo_keras.evaluation.segmentation import (detection_rates, froc, grouped_mean_interval,
                                                 overlap_scores, segmentation_summary)
from mammo_keras.losses import (HybridDeepSupervisionLoss, dice_ce_loss, dice_loss,
                                exit_weights, pixel_cross_entropy, sparse_mil_loss)
from mammo_keras.models import DeepSupervisionModel, build_hds_unet, description_of

MIAS_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mias" / "all-mias.tar.gz"
SMALL = (4, 8, 16, 16, 16, 16, 16, 16, 16, 8, 4)  # the paper's 11 stages, narrower


def _randomise_batchnorm(model: keras.Model) -> None:
    """Non-trivial BN statistics, so that inference-mode parity tests them too."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(len(layer.name))
            shape = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.1, shape),
                               rng.normal(0, 0.1, shape), rng.uniform(0.5, 1.5, shape)])


@pytest.mark.parametrize("exits, names", [
    ("hds", {f"seg_logits_{k}" for k in range(6)} | {f"mil_logits_{k}" for k in range(6)}),
    ("ds", {f"seg_logits_{k}" for k in range(6)}),
    ("seg", {"seg_logits_5"}),
    ("cls", {f"mil_logits_{k}" for k in range(6)})])
def test_each_ablation_has_its_exits_and_shapes(exits, names):
    model = build_hds_unet((128, 96, 1), widths=SMALL, exits=exits, mil_stride=32)
    served = {"label"} | ({"mask"} if exits != "cls" else set())
    assert set(model.output) == names | served
    outputs = model(np.random.default_rng(0).random((2, 128, 96, 1), np.float32))
    for name in names:
        expected = (2, 128, 96, 2) if name.startswith("seg") else (2, 4, 3, 2)
        assert tuple(outputs[name].shape) == expected
    label = keras.ops.convert_to_numpy(outputs["label"])
    np.testing.assert_allclose(label.sum(axis=1), 1.0, atol=1e-6)
    if exits in ("ds", "seg"):  # the image score is the largest pixel probability
        mask = keras.ops.convert_to_numpy(outputs["mask"])
        np.testing.assert_allclose(label[:, 1], mask.max(axis=(1, 2, 3)), atol=1e-6)


def test_paper_structure_22_residual_blocks_in_the_trunk_and_the_authors_instance_grid():
    model = build_hds_unet()  # the paper's widths at its 512 x 384 crop
    trunk = {layer.name.rsplit("_add", 1)[0] for layer in model.layers
             if layer.name.endswith("_add") and not layer.name.startswith(("seg_", "mil_"))}
    assert len(trunk) == 11 * 2
    assert tuple(model.output["mil_logits_0"].shape[1:]) == (4, 3, 2)  # 128 px instances
    widths = [model.get_layer(f"encoder{i}_block1_2_conv").filters for i in range(1, 6)]
    assert widths == [16, 32, 64, 128, 128]
    dropout = {layer.name: layer.rate for layer in model.layers
               if isinstance(layer, keras.layers.SpatialDropout2D)}
    assert dropout["encoder1_block1_dropout"] == 0.2 and dropout["bottleneck_block1_dropout"] == 0.5
    assert dropout["decoder5_block2_dropout"] == 0.2


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="the PyTorch reference needs the torch extra")
def test_the_keras_unet_computes_the_authors_network_in_pytorch():
    import torch

    from mammo_keras.bench.torch_hds import HDSUNetTorch, load_keras_weights

    model = build_hds_unet((64, 96, 1), widths=SMALL, mil_stride=32)
    _randomise_batchnorm(model)
    peer = HDSUNetTorch((64, 96), widths=SMALL, mil_stride=32).eval()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert sum(p.numel() for p in peer.parameters()) == trainable
    load_keras_weights(peer, model)
    x = np.random.default_rng(1).random((2, 64, 96, 1), np.float32)
    expected = model(x, training=False)
    with torch.no_grad():
        got = peer(torch.from_numpy(x).permute(0, 3, 1, 2))
    assert set(got) == {name for name in expected if name.endswith(tuple("012345"))}
    for name, value in got.items():
        np.testing.assert_allclose(value.permute(0, 2, 3, 1).numpy(),
                                   keras.ops.convert_to_numpy(expected[name]), atol=2e-5)


def test_the_unet_saves_and_loads_with_the_same_outputs(tmp_path):
    model = build_hds_unet((64, 64, 1), widths=SMALL, mil_stride=32)
    model.save(tmp_path / "hds.keras")
    loaded = keras.saving.load_model(tmp_path / "hds.keras")
    x = np.random.default_rng(2).random((1, 64, 64, 1), np.float32)
    for name, value in model(x).items():
        np.testing.assert_allclose(loaded(x)[name], value, atol=1e-6)


def test_invalid_shapes_and_ablations_are_one_clear_error():
    with pytest.raises(ValueError, match="multiples of 32"):
        build_hds_unet((100, 96, 1))
    with pytest.raises(ValueError, match="exits must be one of"):
        build_hds_unet(exits="both")
    with pytest.raises(ValueError, match="2 classes"):
        build_hds_unet(num_classes=3)


# --- losses against NumPy -------------------------------------------------------------------

def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def segmentation_batch(rng):
    mask = np.zeros((3, 8, 8, 1), np.float32)
    mask[0, 2:5, 2:6] = 1
    mask[1, 0:2, 0:8] = 1  # image 2 has no lesion
    return mask, rng.normal(size=(3, 8, 8, 2)).astype(np.float32)


def test_pixel_cross_entropy_and_monai_dice_ce_match_numpy(segmentation_batch):
    mask, logits = segmentation_batch
    target = np.stack([1 - mask[..., 0], mask[..., 0]], -1)
    p = _softmax(logits.astype(np.float64))
    ce = -(target * np.log(p)).sum(-1).mean()
    intersection = (target * p).sum(axis=(1, 2))
    denominator = target.sum(axis=(1, 2)) + p.sum(axis=(1, 2))
    dice = (1 - (2 * intersection + 1e-5) / (denominator + 1e-5)).mean()  # MONAI's defaults
    assert float(pixel_cross_entropy(mask, logits)) == pytest.approx(ce, rel=1e-5)
    assert float(dice_loss(mask, logits)) == pytest.approx(dice, rel=1e-5)
    assert float(dice_ce_loss(mask, logits)) == pytest.approx(dice + ce, rel=1e-5)


def test_sparse_mil_loss_takes_the_instance_with_the_smallest_background_logit(rng):
    logits = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    labels = np.array([1, 0, 1, 0])
    flat = logits.reshape(4, -1, 2).astype(np.float64)
    chosen = flat[np.arange(4), flat[..., 0].argmin(axis=1)]
    ce = -np.log(_softmax(chosen)[np.arange(4), labels]).mean()
    sparse = _softmax(flat)[..., 1].sum() / 4
    assert float(sparse_mil_loss(labels, logits, 1e-6)) == pytest.approx(ce + 1e-6 * sparse,
                                                                          rel=1e-6)
    assert float(sparse_mil_loss(labels, logits, 0.5)) == pytest.approx(ce + 0.5 * sparse,
                                                                         rel=1e-6)


def test_exit_weights_decay_as_the_authors_train_py():
    epochs = 2800
    for epoch in (0, 1, 700, 2800):
        seg = exit_weights(6, epoch, epochs, 5e-3)
        authors = np.array([3.5, 3.0, 2.5, 2.0, 1.5, 1.0]) * pow(5e-3, 1 / epochs) ** epoch
        authors[-1] = 1.0  # decay_loss_weight leaves the last exit alone
        np.testing.assert_allclose(seg, authors, rtol=1e-4)
    assert exit_weights(1, 10, 10, 5e-3).tolist() == [1.0]  # "seg": the final exit only


def test_deep_supervision_total_is_the_weighted_sum_of_every_exit(segmentation_batch):
    unet = build_hds_unet((64, 64, 1), widths=SMALL, mil_stride=32, dropout=0.0)
    supervision = HybridDeepSupervisionLoss(pixel_loss="dice_ce", epochs=4)
    trainer = DeepSupervisionModel(unet, supervision)
    trainer.set_epoch(2)
    x = np.random.default_rng(3).random((2, 64, 64, 1), np.float32)
    mask = np.zeros((2, 64, 64, 1), np.float32)
    mask[0, 10:20, 10:30] = 1
    y = {"label": np.array([1, 0]), "mask": mask}
    outputs = unet(x, training=False)
    seg_w, cls_w = exit_weights(6, 2, 4, 5e-3), exit_weights(6, 2, 4, 5e-2)
    expected = sum(w * float(dice_ce_loss(mask, outputs[f"seg_logits_{k}"]))
                   for k, w in enumerate(seg_w))
    expected += 0.03 * sum(w * float(sparse_mil_loss(y["label"], outputs[f"mil_logits_{k}"]))
                           for k, w in enumerate(cls_w))
    got = trainer.compute_loss(x, y, outputs, training=False)
    assert float(got) == pytest.approx(expected, rel=1e-5)


# --- mass records ---------------------------------------------------------------------------

@pytest.mark.skipif(not MIAS_ARCHIVE.is_file(), reason="../shared/data/mias is absent")
def test_mias_masses_known_counts_and_the_film_without_coordinates_is_reported():
    records = lesion_records(load_records("mias", root=MIAS_ARCHIVE))
    # CIRC 25 + SPIC 19 + MISC 15 rows; mdb059 (CIRC, benign) has no coordinates
    assert len(records) == 321 and records.counts("label") == {"mass": 55, "no_mass": 266}
    assert sum(len(record.rois) for record in records) == 58
    assert [str(error) for error in records.skipped] == [
        f"{MIAS_ARCHIVE}::mdb059.pgm: 1 of its masses has no coordinates in Info.txt: "
        "no mask can be drawn"]
    calcification = next(r for r in records if r.extra["refnum"] == "mdb209")  # CALC with a circle
    assert calcification.label == "no_mass" and calcification.rois == ()
    assert calcification.extra["finding_label"] == "malignant"
    everything = lesion_records(load_records("mias", root=MIAS_ARCHIVE), kinds="all")
    assert everything.counts("label")["mass"] > 55


def test_a_labelled_film_without_outlines_cannot_train_segmentation():
    folder = Record(path="x/benign/a.png", label="benign", density=None, patient_id=None,
                    laterality=None, view=None, source="folder")
    normal = Record(path="x/normal/b.png", label="normal", density=None, patient_id=None,
                    laterality=None, view=None, source="folder")
    records = lesion_records([folder, normal])
    assert [r.label for r in records] == ["no_mass"]
    assert "no lesion outline" in str(records.skipped[0])


def test_inbreast_keeps_only_mass_polygons():
    mass = ROI(x=5, y=5, radius=3, abnormality="Mass", points=((2, 2), (8, 2), (8, 8)))
    calc = ROI(x=20, y=20, radius=1, abnormality="Calcification")
    record = Record(path="a.dcm", label="malignant", density="B", patient_id="p", laterality="L",
                    view="CC", source="inbreast", rois=(mass, calc), image_shape=(32, 32))
    (converted,) = lesion_records([record])
    assert converted.rois == (mass,) and converted.label == "mass"
    assert converted.mask().sum() == mass.mask(32, 32).sum()


# --- balanced crops ---------------------------------------------------------------------------

def _crops(rate: float, seed: int = 0):
    import tensorflow as tf

    from mammo_keras.data.pipeline import _lesion_crop

    image = np.random.default_rng(0).random((64, 64, 1)).astype(np.float32)
    mask = np.zeros((64, 64, 1), np.float32)
    mask[50:54, 6:10] = 1  # a small lesion near a corner
    example = (tf.constant(image), {"mask": tf.constant(mask), "label": tf.constant(1)})
    return [_lesion_crop(example, tf.constant(i, tf.int64), (16, 24), rate, seed)
            for i in range(40)], image


def test_balanced_crops_hold_the_lesion_at_rate_one_and_relabel_the_crop():
    crops, image = _crops(1.0)
    for cropped, targets in crops:
        assert tuple(cropped.shape) == (16, 24, 1)
        assert targets["mask"].numpy().sum() > 0 and int(targets["label"]) == 1
    random_crops, _ = _crops(0.0)
    labels = [int(targets["label"]) for _, targets in random_crops]
    assert 0 < sum(labels) < len(labels)  # random places: mostly lesion-free, relabelled 0
    for cropped, targets in random_crops:  # every crop is a window of the image
        rows, cols = np.nonzero(np.all(np.lib.stride_tricks.sliding_window_view(
            image[..., 0], (16, 24)) == cropped.numpy()[..., 0], axis=(2, 3)))
        assert len(rows) == 1
        assert int(targets["label"]) == int(targets["mask"].numpy().sum() > 0)
    again, _ = _crops(0.0)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(random_crops, again))  # seeded


def test_train_crop_is_checked_in_the_config():
    from mammo_keras.training import ConfigError, resolve_config

    with pytest.raises(ConfigError, match="train_crop must be"):
        resolve_config({"data": {"image_size": 64, "train_crop": [128, 32],
                                 "task": "lesion_segmentation"},
                        "model": {"builder": "hds_unet", "mil_stride": 32}})


# --- metrics by hand ------------------------------------------------------------------------

def test_dice_iou_over_lesion_films_and_all_films():
    masks = np.zeros((3, 10, 10, 1))
    masks[0, :2, :5] = 1   # 10 px
    masks[1, 5:, 5:] = 1   # 25 px
    predicted = np.zeros((3, 10, 10, 1))
    predicted[0, :2, :3] = 0.9          # 6 px inside: Dice 12/16, IoU 6/10
    predicted[2, 0, 0] = 0.7            # a lesion-free film with a predicted pixel
    scores = overlap_scores(masks, predicted)
    np.testing.assert_allclose(scores["dice"], [0.75, 0.0, 0.0])
    np.testing.assert_allclose(scores["iou"], [0.6, 0.0, 0.0])
    summary = segmentation_summary(masks, predicted, groups=["a", "b", "c"], resamples=200)
    assert summary["dice_lesion"] == pytest.approx(0.375) and summary["dice_all"] == pytest.approx(0.25)
    assert summary["false_positive_image_rate"] == 1.0
    predicted[2, 0, 0] = 0.0  # empty on empty scores 1: counted in "all" only
    assert segmentation_summary(masks, predicted, resamples=0)["dice_all"] == pytest.approx(
        (0.75 + 0 + 1) / 3)


def test_grouped_interval_resamples_patients():
    values = [1.0, 1.0, 0.0, 0.0]
    low, high = grouped_mean_interval(values, groups=["a", "a", "b", "b"], resamples=500)
    assert (low, high) == (0.0, 1.0)  # two patients: the mean is 0, 0.5 or 1
    assert grouped_mean_interval([0.5] * 4, resamples=50) == (0.5, 0.5)


def test_froc_counts_detections_and_false_positives_per_image():
    masks = np.zeros((2, 20, 20, 1))
    masks[0, 2:6, 2:6] = 1
    masks[1, 10:14, 10:14] = 1
    probabilities = np.zeros((2, 20, 20, 1))
    probabilities[0, 2:6, 2:6] = 0.9    # hit at 0.9
    probabilities[0, 15:17, 15:17] = 0.8  # a false positive at 0.8
    probabilities[1, 10:12, 10:12] = 0.4  # hit at 0.4 (IoU 4/16)
    probabilities[1, 0:20, 0] = 0.95      # a false positive at 0.95
    curve = froc(masks, probabilities)
    np.testing.assert_allclose(curve["thresholds"], [0.95, 0.9, 0.8, 0.4])
    np.testing.assert_allclose(curve["sensitivity"], [0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(curve["fp_per_image"], [0.5, 0.5, 1.0, 1.0])
    assert detection_rates(curve, (0.25, 0.5, 1.0)) == {"0.25": 0.0, "0.5": 0.5, "1": 1.0}
    spilled = np.zeros((1, 20, 20, 1)) + 0.5  # one region over the whole film: IoU 16/400
    assert froc(masks[:1], spilled)["sensitivity"].tolist() == [0.0]


# --- the task, end to end -------------------------------------------------------------------

def test_lesion_segmentation_trains_and_evaluates_from_yaml(tmp_path):
    config = {"name": "hds", "data": {"synthetic": {"count": 20, "size": 256}, "image_size": 64,
                                      "split": [0.5, 0.25, 0.25], "task": "lesion_segmentation",
                                      "train_crop": [32, 64]},  # balanced crops to train
              "model": {"builder": "hds_unet", "widths": [4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 4],
                        "mil_stride": 32},
              "task_options": {"pixel_loss": "dice_ce"},
              "training": {"epochs": 2, "batch_size": 4, "optimizer": "sgd",
                           "learning_rate": 0.01, "tensorboard": False, "jit_compile": False},
              "evaluation": {"resamples": 20}}
    path = tmp_path / "hds.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(path), "--out", str(out)]) == 0
    done = json.loads((out / "done.json").read_text())
    assert done["monitor"] == "val_final_exit_loss" and done["class_names"] == ["no_mass", "mass"]
    for key in ("dice_lesion", "dice_all", "lesion_roc_auc", "detection_at_1_fp"):
        assert key in done["metrics"]
    model = keras.saving.load_model(out / "model.keras")
    assert model.input_shape == (None, 64, 64, 1)  # trained on crops, served on whole films
    description = description_of(model)
    assert description.outputs == {"label": "class_probabilities", "mask": "mask"}
    assert description.task == "lesion_segmentation"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == done["images"]["test"]
    for name in ("report.md", "froc.png", "roc.png", "predictions.csv"):
        assert (out / name).is_file()
    with pytest.raises(Exception, match="task_options.pixel_los"):
        cli_config = {**config, "task_options": {"pixel_los": "ce"}}
        from mammo_keras.training import resolve_config
        resolve_config(cli_config)


# --- serving: export, predict --masks, DICOM SEG ---------------------------------------------

@pytest.fixture(scope="module")
def hds_run(tmp_path_factory):
    """A tiny trained HDS run on DICOM phantoms (module-scoped: several tests read it)."""
    out = tmp_path_factory.mktemp("hds") / "run"
    config = {"name": "hds", "data": {"synthetic": {"count": 12, "size": 256}, "image_size": 64,
                                      "split": [0.5, 0.25, 0.25], "task": "lesion_segmentation"},
              "model": {"builder": "hds_unet", "widths": [4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 4],
                        "mil_stride": 32},
              "training": {"epochs": 1, "batch_size": 4, "tensorboard": False},
              "evaluation": {"resamples": 0}}
    from mammo_keras.training import train

    train(config, out, verbose=0)
    return out


def test_predict_writes_masks_at_the_original_size_and_dicom_seg_referencing_the_source(
        hds_run, tmp_path):
    import pydicom
    from PIL import Image

    images = sorted((hds_run / "data").rglob("images/*.dcm"))[:3]
    out = tmp_path / "masks"
    assert cli.main(["predict", str(hds_run / "model.keras"), *map(str, images),
                     "--out", str(tmp_path / "p.csv"), "--masks", str(out),
                     "--mask-threshold", "0.3"]) == 0
    import csv
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 3 and {"p_mass", "p_no_mass", "mask_png", "mask_dicom"} <= set(rows[0])
    for row, image in zip(rows, images):
        source = pydicom.dcmread(image)
        mask = np.asarray(Image.open(row["mask_png"]))
        assert mask.shape == (source.Rows, source.Columns) and set(np.unique(mask)) <= {0, 255}
        assert int(row["mask_pixels"]) == int((mask == 255).sum())
        seg = pydicom.dcmread(row["mask_dicom"])
        assert seg.Modality == "SEG" and seg.StudyInstanceUID == source.StudyInstanceUID
        referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert seg.SegmentSequence[0].SegmentLabel == "Mass"
        assert (seg.pixel_array.reshape(mask.shape) > 0).sum() == (mask == 255).sum()


def test_a_dicom_without_uids_loses_only_its_seg(hds_run, tmp_path, capsys):
    """A source without SOPInstanceUID / StudyInstanceUID cannot be referenced by a SEG: that
    SEG is listed with its reason; every prediction and PNG mask is written."""
    import csv

    import pydicom

    images = sorted((hds_run / "data").rglob("images/*.dcm"))[:3]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for index, image in enumerate(images):
        dataset = pydicom.dcmread(image)
        if index == 0:
            del dataset.SOPInstanceUID
        if index == 1:
            del dataset.StudyInstanceUID
        dataset.save_as(inputs / f"film{index}.dcm")
    assert cli.main(["predict", str(hds_run / "model.keras"), str(inputs),
                     "--out", str(tmp_path / "p.csv"), "--masks", str(tmp_path / "masks")]) == 3
    rows = {Path(row["path"]).name: row for row in csv.DictReader(open(tmp_path / "p.csv"))}
    assert sorted(rows) == ["film0.dcm", "film1.dcm", "film2.dcm"]
    assert all(Path(row["mask_png"]).is_file() for row in rows.values())
    assert rows["film0.dcm"]["mask_dicom"] == rows["film1.dcm"]["mask_dicom"] == ""
    assert Path(rows["film2.dcm"]["mask_dicom"]).is_file()
    skipped = {Path(row["path"]).name: row["reason"]
               for row in csv.DictReader(open(tmp_path / "p.skipped.csv"))}
    assert skipped == {
        "film0.dcm": "DICOM SEG not written (has no SOPInstanceUID, so a DICOM SEG cannot "
                     "reference it); the prediction and PNG mask were written",
        "film1.dcm": "DICOM SEG not written (has no StudyInstanceUID, so a DICOM SEG cannot "
                     "reference it); the prediction and PNG mask were written"}


def test_the_mask_written_is_the_model_output_mapped_back(hds_run, tmp_path):
    """predict_masks = the served model on the preprocessed film, inverted through the crop."""
    from mammo_keras.data import read_image
    from mammo_keras.data.preprocessing import invert_geometry
    from mammo_keras.export import load_predictor
    from mammo_keras.predict import predict_masks

    image_path = sorted((hds_run / "data").rglob("images/*.dcm"))[0]
    predictor = load_predictor(hds_run / "model.keras")
    rows, skipped = predict_masks(predictor, [image_path], tmp_path, threshold=0.3,
                                  dicom_seg=False)
    assert skipped == [] and rows[0]["mask_dicom"] == ""
    image, meta = read_image(image_path)
    processed, geometry = predictor.preprocess(image, meta["laterality"])
    model = keras.saving.load_model(hds_run / "model.keras")
    expected = invert_geometry(model(processed[None])["mask"][0], geometry, image.shape).numpy()
    from PIL import Image
    written = np.asarray(Image.open(rows[0]["mask_png"])) == 255
    np.testing.assert_array_equal(written, expected[..., 0] > 0.3)


def test_a_classifier_has_no_masks_to_write(tmp_path):
    from mammo_keras.export.runtime import keras_predictor
    from mammo_keras.models import build_classifier
    from mammo_keras.predict import predict_masks

    predictor = keras_predictor(build_classifier("baseline_cnn", "gap", 3, (32, 32, 1)))
    with pytest.raises(Exception, match="no mask output"):
        predict_masks(predictor, [], tmp_path)


def test_export_serves_mask_and_probabilities_with_parity(hds_run, tmp_path):
    from mammo_keras.export import export_model, load_predictor

    export_model(hds_run / "model.keras", tmp_path / "export", fmt="all")
    keras_side = load_predictor(hds_run / "model.keras")
    x = np.random.default_rng(4).random((2, 64, 64, 1), np.float32)
    reference = keras_side.outputs(x)
    for artefact in (tmp_path / "export" / "savedmodel", tmp_path / "export" / "model.tflite"):
        predictor = load_predictor(artefact)
        outputs = predictor.outputs(x)
        assert set(outputs) == {"probabilities", "mask"}
        np.testing.assert_allclose(outputs["probabilities"], reference["probabilities"],
                                   atol=1e-5)
        np.testing.assert_allclose(outputs["mask"], reference["mask"], atol=1e-4)


# --- the dashboard draws the predicted outline ------------------------------------------------

def test_outline_masks_draws_the_edge_of_the_mask_in_cyan():
    from PIL import Image

    from mammo_keras.dashboard.app import PREDICTED_OUTLINE, outline_masks

    mask = np.zeros((200, 160), np.float32)
    mask[50:100, 40:120] = 0.9  # drawn on a picture of half the size
    marked = np.asarray(outline_masks(Image.new("RGB", (80, 100)), {"mask": mask}))
    cyan = np.all(marked == PREDICTED_OUTLINE, axis=-1)
    rows, cols = np.nonzero(cyan)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (25, 49, 20, 59)
    assert not cyan[30:45, 25:55].any()  # the inside stays the picture's


def test_the_dashboard_outlines_a_segmentation_models_lesion(hds_run, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import mammo_keras.dashboard.app as app_module

    st.cache_resource.clear()
    monkeypatch.setenv("MAMMO_KERAS_DASHBOARD_MODEL", str(hds_run / "model.keras"))
    monkeypatch.delenv("MAMMO_KERAS_DASHBOARD_RESULTS", raising=False)
    app = AppTest.from_file(app_module.__file__, default_timeout=180)
    app.run()
    assert not app.exception
    image = sorted((hds_run / "data").rglob("images/*.dcm"))[0]
    app.file_uploader(key="upload").set_value((image.name, image.read_bytes(),
                                               "application/dicom")).run()
    assert not app.exception and not app.error
    caption = app.get("image")[0].captions[0]
    assert "cyan: the predicted lesion outline" in caption
    assert "| mass |" in next(m.value for m in app.markdown if m.value.startswith("| class"))


def test_cbis_ddsm_keeps_the_masks_of_masses_and_reports_a_missing_one(tmp_path):
    from mammo_keras.data.synthetic_writer import write_synthetic

    root = write_synthetic(tmp_path / "cbis", 10, size=256, fmt="cbis", seed=5)
    records = load_records("cbis_ddsm", root=root)
    converted = lesion_records(records)
    assert len(converted) == len(records) and not converted.skipped
    for before, after in zip(records, converted):
        masses = [mask for mask, kind in zip(before.mask_paths,
                                             before.extra["abnormality_types"])
                  if kind == "mass"]
        assert list(after.mask_paths) == masses
        assert after.label == ("mass" if masses else "no_mass")
    with_mass = next(r for r in records if "mass" in r.extra["abnormality_types"])
    broken = [Record(**{**{f: getattr(with_mass, f) for f in (
        "path", "label", "density", "patient_id", "laterality", "view", "source")},
        "mask_paths": (), "extra": with_mass.extra})]
    assert "ROI mask of one of its lesions is missing" in str(lesion_records(broken).skipped[0])


def test_evaluate_command_gives_a_segmentation_model_the_lesion_report(hds_run, tmp_path,
                                                                        capsys):
    data = next((hds_run / "data").iterdir())
    out = tmp_path / "evaluation"
    assert cli.main(["evaluate", str(hds_run / "model.keras"), "--data", str(data),
                     "--out", str(out), "--resamples", "20", "--include-seen"]) == 0
    printed = capsys.readouterr().out
    assert "dice_lesion" in printed and "lesion_roc_auc" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 12 and "segmentation" in metrics
    assert (out / "froc.png").is_file() and "Dice, images with a lesion" in (
        out / "report.md").read_text()


@pytest.mark.parametrize("model, message", [
    ({"widths": [16, 0, 16]}, "widths must be a list of positive integers"),
    ({"widths": "abc"}, "widths must be a list of positive integers"),
    ({"blocks": -1}, "blocks must be a positive integer"),
    ({"mil_stride": 0}, "mil_stride must be a power of 2"),
    ({"dropout": [0.1, 0.2], "mil_stride": 32}, "dropout: one rate per stage"),
    ({"widths": [8, 16, 8], "mil_stride": 128}, r"smaller than one 128 px instance"),
])
def test_a_config_with_u_net_sizes_it_cannot_build_is_refused_when_read(model, message):
    from mammo_keras.training.config import ConfigError, resolve_config

    with pytest.raises(ConfigError, match=message):
        resolve_config({"data": {"task": "lesion_segmentation", "image_size": 64},
                        "model": {"builder": "hds_unet", **model}})


def test_without_highdicom_a_seg_is_a_listed_skip_not_a_crash(tmp_path, monkeypatch):
    """highdicom is the `dicom` extra: without it each SEG is skipped, saying what to install."""
    import sys

    from mammo_keras.data.dicom_seg import write_dicom_seg
    from mammo_keras.data.dicom_writer import write_dicom
    from mammo_keras.data.errors import DataError

    source = write_dicom(tmp_path / "film.dcm", np.linspace(0, 1, 64 * 48,
                                                            dtype=np.float32).reshape(64, 48))
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom now fails
    with pytest.raises(DataError, match=r"film.dcm: writing a DICOM SEG needs highdicom "
                                        r"\(pip install \"mammo-keras\[dicom\]\"\)"):
        write_dicom_seg(source, np.zeros((64, 48), bool), tmp_path / "seg.dcm")
