"""Benchmarks: FLOP counts against published figures, the PyTorch peer against Keras'
ConvNeXt-Tiny, the fast channelwise convolution against Conv2D, and `mammo-keras bench`."""

import importlib.util
import json

import keras
import numpy as np
import pytest

from mammo_keras.bench import ROW_KEYS, add_ratios, forward_flops, markdown_table, plan
from mammo_keras.bench.runner import NAIVE_PREFIX, TORCH_PEER_NAMES, TORCH_PREFIX
from mammo_keras.cli import main
from mammo_keras.layers import ChannelwiseConv2D, use_channelwise_convolutions
from mammo_keras.models import build_classifier

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the optional "
                                                       "'torch' extra)")


# --- FLOPs --------------------------------------------------------------------------------

@pytest.mark.parametrize("application, size, published_gmacs", [
    ("ConvNeXtTiny", 224, 4.5),   # Liu et al. 2022, table 1
    ("InceptionV3", 299, 5.7),    # Szegedy et al. 2016 (5.72 G multiply-adds)
])
def test_forward_flops_match_the_published_counts(application, size, published_gmacs):
    model = getattr(keras.applications, application)(weights=None, input_shape=(size, size, 3))
    assert forward_flops(model) / 2e9 == pytest.approx(published_gmacs, rel=0.02)


def test_forward_flops_of_grouped_depthwise_and_dense_layers():
    inputs = keras.Input((10, 10, 8))
    x = keras.layers.Conv2D(8, 3, padding="same", groups=4)(inputs)   # 2 input channels a group
    x = keras.layers.DepthwiseConv2D(5, padding="valid", depth_multiplier=2)(x)  # 6 x 6 x 16
    x = keras.layers.Dense(3)(x)                                       # per position
    expected = 2 * (100 * 9 * 2 * 8 + 36 * 25 * 8 * 2 + 36 * 16 * 3)
    assert forward_flops(keras.Model(inputs, x)) == expected


# --- the channelwise convolution ----------------------------------------------------------

def test_channelwise_conv_equals_grouped_conv_and_its_gradients(rng):
    x = rng.random((2, 12, 12, 6), dtype=np.float32)
    reference = keras.layers.Conv2D(6, 7, padding="same", groups=6)
    fast = ChannelwiseConv2D(6, 7, padding="same", groups=6)
    reference.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(reference.get_weights())
    np.testing.assert_allclose(fast(x), reference(x), atol=1e-5)
    import tensorflow as tf

    gradients = []
    for layer in (reference, fast):
        tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            loss = tf.reduce_sum(tf.square(layer(tensor)))
        gradients.append(tape.gradient(loss, [tensor, *layer.trainable_variables]))
    for ours, theirs in zip(gradients[1], gradients[0]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backbone,application,depths,size", [
    ("convnext_tiny", "ConvNeXtTiny", (3, 3, 9, 3), 64),
    ("convnext_base", "ConvNeXtBase", (3, 3, 27, 3), 32)])  # Liu et al. 2022, table 9
def test_convnext_backbone_is_keras_applications_with_channelwise_convs(
        rng, tmp_path, backbone, application, depths, size):
    """Same layers, names and weights as keras.applications; output within 1e-5."""
    model = build_classifier(backbone, "gap", 3, (size, size, 1))
    swapped = [layer for layer in model.layers if isinstance(layer, ChannelwiseConv2D)]
    assert len(swapped) == sum(depths)
    assert all(layer.name.endswith("_depthwise_conv") for layer in swapped)
    reference = getattr(keras.applications, application)(
        include_top=False, include_preprocessing=False, weights=None,
        input_shape=(size, size, 3))
    reference.save_weights(tmp_path / "reference.weights.h5")
    ours = build_classifier(backbone, "gap", 3, (size, size, 1),
                            weights=str(tmp_path / "reference.weights.h5"))
    backbone_ours = keras.Model(ours.get_layer("grayscale_adapter").output,
                                ours.get_layer("gap").input)
    x = rng.random((2, size, size, 3), dtype=np.float32)
    np.testing.assert_allclose(backbone_ours(x), reference(x), atol=1e-5, rtol=1e-5)
    saved = tmp_path / "model.keras"
    model.save(saved)
    loaded = keras.saving.load_model(saved)
    assert sum(isinstance(layer, ChannelwiseConv2D) for layer in loaded.layers) == len(swapped)


def test_use_channelwise_convolutions_leaves_other_convolutions_alone():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, groups=2)(inputs)        # 2 channels a group: not channelwise
    x = keras.layers.Conv2D(4, 3, groups=4)(x)             # channelwise
    x = keras.layers.Conv2D(8, 1)(x)
    model = keras.Model(inputs, x)
    converted = use_channelwise_convolutions(model)
    assert [type(layer).__name__ for layer in converted.layers[1:]] == \
        ["Conv2D", "ChannelwiseConv2D", "Conv2D"]
    assert [type(layer).__name__ for layer in model.layers[1:]] == ["Conv2D"] * 3  # untouched
    images = np.random.default_rng(0).random((2, 8, 8, 4)).astype(np.float32)
    np.testing.assert_allclose(converted(images), model(images), atol=1e-5)


# --- the PyTorch peer ---------------------------------------------------------------------

@needs_torch
def test_pytorch_convnext_computes_the_keras_function(rng):
    import torch

    from mammo_keras.bench.runner import torch_forward_flops
    from mammo_keras.bench.torch_peers import PEERS, convnext_tiny, load_keras_convnext

    assert sorted(PEERS) == sorted(TORCH_PEER_NAMES)
    keras_model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(64, 64, 3),
                                                  include_preprocessing=False, classes=3,
                                                  classifier_activation=None)
    for layer in keras_model.layers:  # layer scales of 1e-6 would hide the blocks
        if layer.name.endswith("_layer_scale"):
            layer.set_weights([rng.random(w.shape).astype(np.float32) for w in layer.get_weights()])
    peer = load_keras_convnext(convnext_tiny(), keras_model)
    x = rng.random((2, 64, 64, 3), dtype=np.float32)
    expected = keras_model(x).numpy()
    got = peer(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())
    assert sum(p.numel() for p in peer.parameters()) == keras_model.count_params()
    assert torch_forward_flops(peer, torch.zeros(1, 3, 64, 64)) == forward_flops(keras_model)


@needs_torch
def test_pytorch_baseline_cnn_has_the_keras_parameters():
    from mammo_keras.bench.torch_peers import baseline_cnn

    keras_model = build_classifier("baseline_cnn", "gap", 3, (64, 64, 1))
    peer = baseline_cnn()
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    assert sum(p.numel() for p in peer.parameters()) == trainable


# --- plan, ratios, table, command -----------------------------------------------------------

def test_plan_adds_the_references_once():
    specs = plan(["convnext_tiny", "baseline_cnn"], ["gap", "gagm_se"], ["train"], 64, 2)
    models = [spec["model"] for spec in specs]
    assert models.count(NAIVE_PREFIX + "convnext_tiny") == 1
    assert NAIVE_PREFIX + "baseline_cnn" not in models  # keras.applications has none
    assert models.count(TORCH_PREFIX + "baseline_cnn") == 1 and models[-1] == "ceiling:matmul"
    assert plan(["baseline_cnn"], ["gap"], ["train"], 64, 2, references=False)[-1][
        "model"] == "baseline_cnn"


def test_add_ratios_against_references_and_the_ceiling():
    common = {"mode": "train", "image_size": 64, "batch_size": 2}
    rows = add_ratios([
        {"model": "convnext_tiny", "head": "gap", "img_per_s": 4.0, "forward_gflops": 1.0,
         **common},
        {"model": NAIVE_PREFIX + "convnext_tiny", "img_per_s": 1.0, **common},
        {"model": TORCH_PREFIX + "convnext_tiny", "img_per_s": 5.0, **common},
        {"model": "ceiling:matmul", "mode": "matmul", "image_size": 2048, "batch_size": None,
         "img_per_s": None, "gflops": 100.0}])
    ours = rows[0]
    assert ours["vs_pytorch"] == pytest.approx(0.8)
    assert ours["vs_keras_applications"] == pytest.approx(4.0)
    assert ours["achieved_gflops"] == pytest.approx(12.0)   # 3 x 1 GFLOP x 4 img/s
    assert ours["pct_of_ceiling"] == pytest.approx(12.0)


def test_bench_command_writes_valid_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    table = tmp_path / "bench.md"
    status = main(["bench", "--model", "baseline_cnn", "--head", "gap", "--image-size", "32",
                   "--batch-size", "2", "--steps", "1", "--repeats", "1", "--json", str(out),
                   "--markdown", str(table)])
    assert status == 0, capsys.readouterr()
    rows = json.loads(out.read_text())
    assert [row["model"] for row in rows] == ["baseline_cnn", TORCH_PREFIX + "baseline_cnn",
                                              "ceiling:matmul"]
    ours, peer, ceiling = rows
    # rates depend on the machine (their arithmetic is tested with a fake clock below); a
    # real run gives a finite positive rate and the memory of a process that imported TF
    assert set(ROW_KEYS) <= set(ours) and 0 < ours["img_per_s"] < 1e6
    assert ours["peak_memory_mb"] > 100
    assert ours["forward_gflops"] == pytest.approx(
        forward_flops(build_classifier("baseline_cnn", "gap", 3, (32, 32, 1))) / 1e9)
    assert ceiling["gflops"] > 1
    if HAS_TORCH:
        assert peer["img_per_s"] > 0
        assert ours["vs_pytorch"] == pytest.approx(ours["img_per_s"] / peer["img_per_s"])
    else:
        assert "torch is not installed" in peer["skipped"]
    assert table.read_text() == markdown_table(rows)


def test_bench_command_rejects_an_unknown_model(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--model", "resnet"])
    assert "invalid choice" in capsys.readouterr().err


def test_data_mode_times_the_pipeline_on_phantoms():
    from mammo_keras.bench.runner import run_row

    row = run_row({"model": "mammo_keras:data", "head": None, "mode": "data", "image_size": 64,
                   "batch_size": 2, "steps": 2, "repeats": 1, "source_size": 256})
    assert row["img_per_s"] > 0 and row["source_size"] == 256 and row["peak_memory_mb"] > 0


def test_median_rate_times_every_step_after_the_warm_up(monkeypatch):
    from mammo_keras.bench import runner

    clock = {"now": 0.0, "calls": 0}
    durations = iter([100.0, 0.5, 0.5, 1.0, 1.0, 0.25, 0.25])  # warm-up, then 3 runs x 2 steps

    def step():
        clock["now"] += next(durations)
        clock["calls"] += 1

    monkeypatch.setattr(runner.time, "perf_counter", lambda: clock["now"])
    rate = runner.median_rate(step, images_per_step=4, steps=2, repeats=3)
    assert clock["calls"] == 7
    # the runs take 1.0, 2.0 and 0.5 s for 8 images: 8, 4 and 16 img/s; the median is 8
    assert rate == pytest.approx(8.0)


@pytest.mark.parametrize("backbone, size", [("baseline_cnn", 64), ("convnext_tiny", 64),
                                            ("inception_v3", 96)])
def test_stage_rematerialisation_gives_the_same_outputs_and_gradients(backbone, size):
    """The resolution benchmark's remat variant recomputes each stage; it must compute the
    same function and the same gradients as the model it wraps (in a compiled graph)."""
    import tensorflow as tf

    from mammo_keras.bench.remat import Recomputed, rematerialized
    from mammo_keras.models import build_classifier

    model = build_classifier(backbone, "gap", 3, (size, size, 1))
    remat = rematerialized(model)
    assert sum(isinstance(layer, Recomputed) for layer in remat.layers) >= 4
    images = np.random.default_rng(0).random((2, size, size, 1), np.float32)
    np.testing.assert_allclose(remat(images), model(images), atol=1e-6)

    @tf.function(autograph=False)
    def gradients(network):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(network(images, training=False) ** 2)
        return tape.gradient(loss, network.trainable_weights)

    for a, b in zip(gradients(model), gradients(remat), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-6)


def test_a_failed_row_reports_the_highlighted_keras_message_not_the_last_traceback_line():
    from mammo_keras.bench.runner import _failure_line

    stderr = ("Traceback (most recent call last):\n  File ...\nValueError: Exception "
              "encountered when calling Model.call().\n\n\x1b[1mThe custom_gradient decorator "
              "currently supports keywords arguments only when eager execution is enabled."
              "\x1b[0m\n\nArguments received by Model.call():\n  • kwargs=<class 'inspect._empty'>")
    assert _failure_line(stderr).startswith("The custom_gradient decorator currently supports")
    assert _failure_line("one\nOSError: disk full\n") == "OSError: disk full"
