"""Grad-CAM: against hand-computed maps, back onto the original image, on every backbone."""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mammo_keras import cli
from mammo_keras.data import apply_geometry, generate_phantom, invert_geometry, preprocess
from mammo_keras.data.synthetic import synthetic_specs
from mammo_keras.explain import (explain_image, find_target_layer, grad_cam, heatmap_iou,
                                 pointing_hit)
from mammo_keras.models import build_classifier


def linear_model(kernel: np.ndarray, dense: np.ndarray, bias: np.ndarray) -> keras.Model:
    """image (8, 8, 1) -> 1x1 conv "features" (C channels, ReLU-free) -> GAP -> Dense softmax."""
    inputs = keras.Input((8, 8, 1), name="image")
    features = keras.layers.Conv2D(kernel.shape[-1], 1, use_bias=False, name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(dense.shape[-1], activation="softmax",
                                 name="predictions")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("features").set_weights([kernel.reshape(1, 1, 1, -1)])
    model.get_layer("predictions").set_weights([dense, bias])
    return model


@pytest.fixture
def hand_case():
    rng = np.random.default_rng(0)
    kernel = np.array([1.0, -0.5, 2.0], np.float32)
    dense = np.array([[0.3, -0.2], [-0.4, 0.5], [0.1, 0.2]], np.float32)
    bias = np.array([0.05, -0.05], np.float32)
    images = rng.random((2, 8, 8, 1)).astype(np.float32)
    return linear_model(kernel, dense, bias), images, kernel, dense, bias


def _normalised(maps: np.ndarray) -> np.ndarray:
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0)


def test_gradcam_equals_the_hand_computed_map(hand_case):
    model, images, kernel, dense, bias = hand_case
    maps, chosen, probabilities = grad_cam(model, images, layer="features")
    features = images * kernel                       # (N, 8, 8, 3)
    logits = features.mean(axis=(1, 2)) @ dense + bias
    np.testing.assert_array_equal(chosen, logits.argmax(1))
    np.testing.assert_allclose(probabilities, tf.nn.softmax(logits).numpy(), atol=1e-6)
    # dS_c/dA_ijk = W_kc / (h w): Grad-CAM weights are W_kc / 64
    weights = dense[:, chosen].T / 64.0              # (N, 3)
    expected = np.maximum(np.einsum("nhwc,nc->nhw", features, weights), 0)
    np.testing.assert_allclose(maps, _normalised(expected), atol=1e-5)
    fixed, chosen_one, _ = grad_cam(model, images, class_index=1, layer="features")
    assert list(chosen_one) == [1, 1]
    expected_one = np.maximum(np.einsum("nhwc,c->nhw", features, dense[:, 1] / 64.0), 0)
    np.testing.assert_allclose(fixed, _normalised(expected_one), atol=1e-5)


def test_gradcam_plus_plus_equals_the_closed_form(hand_case):
    model, images, kernel, dense, _ = hand_case
    maps, chosen, _ = grad_cam(model, images, layer="features", method="gradcam++")
    features = images * kernel
    gradient = np.broadcast_to((dense[:, chosen].T / 64.0)[:, None, None, :], features.shape)
    total = features.sum(axis=(1, 2), keepdims=True)
    denominator = 2 * gradient ** 2 + total * gradient ** 3
    alpha = gradient ** 2 / np.where(np.abs(denominator) > 0, denominator, 1)
    weights = (alpha * np.maximum(gradient, 0)).sum(axis=(1, 2))
    expected = np.maximum(np.einsum("nhwc,nc->nhw", features, weights), 0)
    np.testing.assert_allclose(maps, _normalised(expected), atol=1e-5)


@pytest.mark.parametrize("backbone, size, layer", [("baseline_cnn", 64, None),
                                                   ("convnext_tiny", 64, None),
                                                   ("inception_v3", 75, "mixed10")])
def test_every_backbone_has_a_target_layer(backbone, size, layer):
    for head in ("gap", "gagm_se"):
        model = build_classifier(backbone, head, 3, (size, size, 1))
        name = find_target_layer(model)
        assert len(model.get_layer(name).output.shape) == 4
        if layer:
            assert name == layer
        maps, _, _ = grad_cam(model, np.random.rand(2, size, size, 1), method="gradcam++")
        assert maps.shape[0] == 2 and maps.ndim == 3
        assert np.all((maps >= 0) & (maps <= 1))


def test_invert_geometry_undoes_apply_geometry():
    for seed, laterality in ((1, "L"), (2, "R")):
        spec = [s for s in synthetic_specs(40, seed=seed, size=512)
                if s.label == "malignant" and s.laterality == laterality][0]
        image, mask, _ = generate_phantom(spec)
        _, geometry = preprocess(image, 256)
        square = apply_geometry(tf.constant(mask, tf.float32), geometry, 256)
        restored = invert_geometry(square, geometry, mask.shape)[..., 0].numpy()
        assert restored.shape == mask.shape
        assert heatmap_iou(restored, mask, 0.5) > 0.85


def test_heatmap_lands_on_the_bright_lesion_of_the_original_image():
    """A model whose class-0 evidence is brightness: the map's peak must come back onto the
    bright square of the uncropped, right-sided (flipped) image."""
    inputs = keras.Input((64, 64, 1), name="image")
    features = keras.layers.Conv2D(1, 1, use_bias=False, name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("features").set_weights([np.ones((1, 1, 1, 1), np.float32)])
    model.get_layer("predictions").set_weights([np.array([[1.0, -1.0]], np.float32),
                                                np.zeros(2, np.float32)])
    image = np.zeros((600, 400), np.float32)
    yy, xx = np.mgrid[:600, :400]
    image[((yy - 300) / 260) ** 2 + ((xx - 400) / 230) ** 2 < 1] = 0.35  # breast on the right
    lesion = np.zeros_like(image, bool)
    lesion[250:290, 250:290] = True
    image[lesion] = 1.0
    result = explain_image(model, image, class_index=0)
    assert result["heatmap"].shape == image.shape
    assert pointing_hit(result["heatmap"], lesion)
    assert heatmap_iou(result["heatmap"], lesion, 0.5) > 0.3


def test_localization_metrics_by_hand():
    heatmap = np.zeros((4, 4))
    heatmap[1, 2] = 1.0
    heatmap[1, 1] = 0.6
    mask = np.zeros((4, 4), bool)
    mask[1, 1:3] = True
    assert pointing_hit(heatmap, mask)
    assert heatmap_iou(heatmap, mask, 0.5) == 1.0
    mask[1, 2] = False
    assert not pointing_hit(heatmap, mask) and heatmap_iou(heatmap, mask, 0.5) == 0.5
    assert pointing_hit(heatmap, mask, tolerance=1.0)   # the peak is 1 px from the lesion
    mask[1, 1] = False
    mask[3, 0] = True
    assert not pointing_hit(heatmap, mask, tolerance=2.0)  # 2.83 px away
    assert pointing_hit(heatmap, mask, tolerance=3.0)
    with pytest.raises(ValueError, match="differ in shape"):
        pointing_hit(heatmap, mask[:2])


def test_explain_command_writes_overlays_maps_and_a_table(tmp_path, capsys):
    model = build_classifier("baseline_cnn", "gagm_se", 3, (64, 64, 1))
    model.save(tmp_path / "model.keras")
    images = tmp_path / "images"
    images.mkdir()
    for index, spec in enumerate(synthetic_specs(2, seed=4, size=256)):
        phantom = generate_phantom(spec)[0]
        Image.fromarray(np.round(phantom * 65535).astype(np.uint16)).save(images / f"{index}.png")
    (images / "broken.png").write_bytes(b"not a png")
    status = cli.main(["explain", str(tmp_path / "model.keras"), str(images), "--out",
                       str(tmp_path / "out"), "--class", "malignant"])
    assert status == 3  # partial success: the broken file is listed beside the maps
    printed = capsys.readouterr().out
    assert "2 heat-maps" in printed and "broken.png" in printed
    listed = list(csv.DictReader(open(tmp_path / "out" / "skipped.csv")))
    assert [Path(row["path"]).name for row in listed] == ["broken.png"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "explanations.csv")))
    assert [row["explained_class"] for row in rows] == ["malignant", "malignant"]
    for row in rows:
        raw = np.asarray(Image.open(tmp_path / "out" / row["map"]))
        original = np.asarray(Image.open(row["path"]))
        assert raw.shape == original.shape and raw.dtype == np.uint16
        picture = Image.open(tmp_path / "out" / row["overlay"])
        assert picture.mode == "RGB" and picture.height == original.shape[0] + 46  # + legend
    assert cli.main(["explain", str(tmp_path / "model.keras"), str(images), "--out",
                     str(tmp_path / "o2"), "--class", "cancer"]) == 2
    assert "'cancer' is not one of" in capsys.readouterr().err


def test_an_overlay_with_a_caption_carries_the_colour_bar():
    from matplotlib import colormaps

    from mammo_keras.explain import overlay

    image = np.linspace(0, 1, 300 * 200, dtype=np.float32).reshape(300, 200)
    heatmap = np.zeros_like(image)
    plain = overlay(image, heatmap)
    captioned = overlay(image, heatmap, caption="Grad-CAM of malignant, P = 0.83")
    assert plain.size == (200, 300)
    assert captioned.size[1] == 346 and captioned.size[0] >= 250  # a band of 46 px below
    pixels = np.asarray(captioned)
    assert np.array_equal(pixels[:300, :200], np.asarray(plain))  # the picture is untouched
    width = 200
    expected = (colormaps["jet"](np.linspace(0, 1, width))[:, :3] * 255).astype(np.uint8)
    bar_rows = [row for row in range(300, 346) for left in range(0, 40)
                if np.array_equal(pixels[row, left:left + width], expected)]
    assert len(bar_rows) == 10  # the colour bar, 10 px high, is the jet ramp
    text = pixels[300:300 + 16, :200]
    assert (text < 128).any()  # the caption is written in black on the white band


@pytest.mark.parametrize("width, height", [(120, 160), (2560, 3328)])
def test_the_colour_bar_is_readable_and_whole_at_any_size(width, height):
    """The band under an overlay: nothing cut on a thumbnail, text that grows with a full film."""
    from PIL import Image

    from mammo_keras.explain.explain import with_colour_bar

    canvas = with_colour_bar(Image.new("RGB", (width, height), (128, 128, 128)),
                             "Grad-CAM of malignant, P = 0.83")
    band = np.asarray(canvas)[height:]
    ink = np.argwhere(band.min(axis=2) < 200)  # text and bar pixels
    assert ink[:, 1].max() < canvas.width - 2  # "1 (max)" ends inside the band
    text_rows = np.unique(ink[:, 0])
    scale = max(1.0, width / 500)
    assert band.shape[0] >= 40 * scale and text_rows.size >= 20 * scale
