"""Benchmark rows: throughput (images/s) and peak memory of one model in one mode.

A row is measured in a child process of its own (`run_isolated`), so that its peak memory
is its own and its Keras backend can differ from the parent's. What is timed:

- train: a training step (forward, loss, gradients, AdamW update) on a fixed batch of
  random images, through Keras' `train_on_batch` (the compiled step `fit` runs) or a plain
  PyTorch loop for the peers;
- infer: the forward pass in inference mode (`predict_on_batch` / `torch.no_grad`);
- data: the mammo-keras tf.data pipeline (decode DICOM, crop, flip, resize, batch) on
  synthetic full-field mammograms written once.

Each figure is the median of `repeats` runs of `steps` steps after one warm-up run.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mammo_keras.errors import UserError

MODES = ("train", "infer", "data")
KERAS_BACKENDS = ("tensorflow", "torch", "jax")
NAIVE_PREFIX = "keras.applications:"
TORCH_PREFIX = "pytorch:"
NAIVE_MODELS = {"convnext_tiny": "ConvNeXtTiny", "inception_v3": "InceptionV3"}
# The architectures of torch_peers.PEERS (named here so that planning needs no torch). There
# is no InceptionV3 peer: torchvision, which has one, does not install beside the CPU torch.
TORCH_PEER_NAMES = ("baseline_cnn", "convnext_tiny", "hds_unet")
HDS = "hds_unet"  # the HDS U-Net: trained on masks and labels with its deep supervision


def image_shape(size) -> tuple[int, int]:
    """(H, W) of a row's `image_size`: a side (224) or "HxW" ("512x384")."""
    if isinstance(size, str) and "x" in size:
        height, width = size.lower().split("x")
        return int(height), int(width)
    return int(size), int(size)


def median_rate(step: Callable[[], object], images_per_step: int, steps: int,
                repeats: int) -> float:
    """Images per second: median over `repeats` timed runs of `steps` calls, after a warm-up."""
    step()
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(images_per_step * steps / (time.perf_counter() - started))
    return statistics.median(rates)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batch(size, batch: int, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((batch, *image_shape(size), channels), dtype=np.float32)
    return images, rng.integers(0, 3, batch).astype(np.int32)


def _masks(size, batch: int, seed: int = 0) -> np.ndarray:
    """Lesion masks (batch, H, W): a disc in every other image, as HDS trains on."""
    height, width = image_shape(size)
    rows, cols = np.ogrid[:height, :width]
    disc = (rows - height / 2) ** 2 + (cols - width / 3) ** 2 <= (min(height, width) / 8) ** 2
    return np.stack([disc if i % 2 == 0 else np.zeros_like(disc) for i in range(batch)])


def _keras_model(model: str, head: str, size: int):
    """(model, channels): ours through build_classifier, or the naive keras.applications one
    (3-channel input, its own GAP top, untrained)."""
    import keras

    from mammo_keras.models import build_classifier

    if model == HDS:
        from mammo_keras.models import build_hds_unet

        return build_hds_unet((*image_shape(size), 1), exits=head or "hds"), 1
    if model.startswith(NAIVE_PREFIX):
        name = model[len(NAIVE_PREFIX):]
        if name not in NAIVE_MODELS:
            raise UserError(f"no keras.applications reference for {name!r}; one of "
                             f"{sorted(NAIVE_MODELS)}")
        application = getattr(keras.applications, NAIVE_MODELS[name])
        return application(weights=None, input_shape=(size, size, 3), classes=3), 3
    return build_classifier(model, head, 3, (size, size, 1)), 1


def _keras_row(spec: dict) -> dict:
    """One Keras row; `spec` may add "precision" (a Keras dtype policy, e.g. "mixed_bfloat16")
    "remat": "segments" (`mammo_keras.bench.remat`) or a `keras.RematScope` mode the
    model is built under (e.g. "full"), and "morph_factor": k (the model built for a k times
    smaller side, then `to_resolution` to the row's side)."""
    import contextlib

    import keras

    from mammo_keras.bench.flops import forward_flops

    keras.mixed_precision.set_global_policy(spec.get("precision") or "float32")
    remat = spec.get("remat")
    scope = keras.RematScope(mode=remat) if remat and remat != "segments" else \
        contextlib.nullcontext()
    factor = spec.get("morph_factor")
    with scope:
        model, channels = _keras_model(spec["model"], spec["head"],
                                       spec["image_size"] // factor if factor else
                                       spec["image_size"])
    if factor:  # MorphHR: the network of a factor-times smaller input behind its front
        from mammo_keras.morph import to_resolution

        model = to_resolution(model, spec["image_size"])
    if remat == "segments":
        from mammo_keras.bench.remat import rematerialized

        model = rematerialized(model)
    images, labels = _batch(spec["image_size"], spec["batch_size"], channels)
    if spec["mode"] == "train" and spec["model"] == HDS:  # SGD, the authors' optimizer
        from mammo_keras.losses import HybridDeepSupervisionLoss
        from mammo_keras.models import DeepSupervisionModel

        unet = model
        model = DeepSupervisionModel(unet, HybridDeepSupervisionLoss())
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      jit_compile=spec.get("jit_compile", "auto"))
        masks = _masks(spec["image_size"], len(images))[..., None].astype(np.float32)
        targets = {"label": (np.arange(len(images)) % 2 == 0).astype(np.int32), "mask": masks}
        rate = median_rate(lambda: model.train_on_batch(images, targets), len(images),
                           spec["steps"], spec["repeats"])
        model = unet
    elif spec["mode"] == "train":
        if spec["model"].startswith(NAIVE_PREFIX):
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        else:
            model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                          loss="sparse_categorical_crossentropy",
                          jit_compile=spec.get("jit_compile", "auto"))
        rate = median_rate(lambda: model.train_on_batch(images, labels), len(images),
                           spec["steps"], spec["repeats"])
    else:
        rate = median_rate(lambda: model.predict_on_batch(images), len(images),
                           spec["steps"], spec["repeats"])
    return {"img_per_s": rate, "forward_gflops": forward_flops(model) / 1e9}


def _torch_row(spec: dict) -> dict:
    import torch

    from mammo_keras.bench.torch_peers import PEERS

    name = spec["model"][len(TORCH_PREFIX):]
    if name not in PEERS:
        raise UserError(f"no PyTorch peer for {name!r}; one of {sorted(PEERS)}")
    torch.manual_seed(0)
    channels = 3 if name == "convnext_tiny" else 1
    shape = {"input_shape": image_shape(spec["image_size"])} if name == HDS else {}
    model = PEERS[name](channels=channels, **shape)
    images, labels = _batch(spec["image_size"], spec["batch_size"], channels)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels).long()
    if spec["mode"] == "train" and name == HDS:
        from mammo_keras.bench.torch_hds import hds_loss_torch

        model.train()
        optimizer = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
        masks = torch.from_numpy(_masks(spec["image_size"], len(images))).long()
        present = torch.from_numpy((np.arange(len(images)) % 2 == 0).astype(np.int64))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            hds_loss_torch(model(x), masks, present).backward()
            optimizer.step()
    elif spec["mode"] == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), 1e-3)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    else:
        model.eval()

        def step() -> None:
            with torch.no_grad():
                model(x)
    return {"img_per_s": median_rate(step, len(images), spec["steps"], spec["repeats"]),
            "forward_gflops": torch_forward_flops(model, x[:1]) / 1e9}


def torch_forward_flops(model, example) -> int:
    """FLOPs of one forward pass of a PyTorch model, counted like `flops.forward_flops`:
    2 per multiply-add of its Conv2d and Linear layers."""
    import torch

    total = 0

    def count(layer, inputs, output) -> None:
        nonlocal total
        if isinstance(layer, torch.nn.Conv2d):
            per_output = layer.in_channels // layer.groups * layer.kernel_size[0] \
                * layer.kernel_size[1]
        else:
            per_output = layer.in_features
        total += 2 * output.numel() // output.shape[0] * per_output

    hooks = [layer.register_forward_hook(count) for layer in model.modules()
             if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()
        model(example)
    for hook in hooks:
        hook.remove()
    return total


def _data_row(spec: dict) -> dict:
    import tempfile

    from mammo_keras.data import load_records, write_synthetic
    from mammo_keras.data.pipeline import load_dataset

    count = spec["batch_size"] * spec["steps"]
    with tempfile.TemporaryDirectory() as folder:
        root = write_synthetic(Path(folder) / "phantoms", count, size=spec.get("source_size",
                                                                                1024),
                               fmt="dicom", seed=0)
        records = load_records(root)

        def one_pass() -> None:
            for _ in load_dataset(records, image_size=spec["image_size"],
                                  batch_size=spec["batch_size"]):
                pass
        rate = median_rate(one_pass, count, 1, spec["repeats"])
    return {"img_per_s": rate, "source_size": spec.get("source_size", 1024)}


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The machine's dense float32 matmul rate through TensorFlow (the ceiling of the
    benchmark): median GFLOP/s of (size x size) @ (size x size) products."""
    import tensorflow as tf

    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    rate = median_rate(lambda: tf.linalg.matmul(a, b).numpy(), 1, 3, repeats)
    return 2 * size ** 3 * rate / 1e9


def run_row(spec: dict) -> dict:
    """Measure one row in this process. `spec` has model, head, mode, image_size,
    batch_size, steps, repeats (and backend, the Keras backend this process runs);
    mode "matmul" measures the ceiling instead."""
    if spec["mode"] == "matmul":
        return {**spec, "backend": "tensorflow", "img_per_s": None,
                "gflops": matmul_gflops(spec.get("image_size") or 2048, spec["repeats"]),
                "peak_memory_mb": peak_memory_mb()}
    if spec["mode"] not in MODES:
        raise UserError(f"mode must be one of {MODES}, not {spec['mode']!r}")
    if spec["mode"] == "data":
        measured = _data_row(spec)
    elif spec["model"].startswith(TORCH_PREFIX):
        measured = _torch_row(spec)
    else:
        measured = _keras_row(spec)
    import keras

    backend = "pytorch" if spec["model"].startswith(TORCH_PREFIX) else keras.backend.backend()
    return {**spec, "backend": backend, **measured, "onednn": onednn_enabled(),
            "peak_memory_mb": peak_memory_mb()}


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs its oneDNN kernels (None: TF not loaded)."""
    from mammo_keras.compat import onednn_enabled as enabled

    return enabled()


def run_isolated(spec: dict, timeout: float = 1800) -> dict:
    """Measure one row in a child process (Keras backend `spec["backend"]`, plus the
    environment variables of `spec["env"]`). A failure comes back as the row with an
    "error" (one line) instead of the figures."""
    backend = spec.get("backend")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                   "KERAS_BACKEND": backend if backend in KERAS_BACKENDS else "tensorflow",
                   **spec.get("env", {})}
    try:
        done = subprocess.run([sys.executable, "-m", "mammo_keras.bench.worker",
                               json.dumps(spec)], capture_output=True, text=True,
                              env=environment, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {**spec, "error": f"exit {done.returncode}: {_failure_line(done.stderr)}"}
    return json.loads(lines[-1])


def _failure_line(stderr: str) -> str:
    """The line of a child's traceback that says what failed: Keras' highlighted message
    (bold ANSI) when there is one, else the last line."""
    lines = stderr.strip().splitlines() or ["no output"]
    highlighted = [line for line in lines if "\x1b[1m" in line]
    chosen = highlighted[-1] if highlighted else lines[-1]
    return chosen.replace("\x1b[1m", "").replace("\x1b[0m", "").strip()
