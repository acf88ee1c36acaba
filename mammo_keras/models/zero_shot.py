"""Zero-shot classifiers and probes made from a CLIP model (`mammo_keras.models.clip`).

`zero_shot_classifier(clip, tokenizer, prompts)` gives an ordinary image -> class
probabilities model: grayscale (N, S, S, 1) in [0, 1] -> `CLIPImagePreprocessing` -> image
tower -> unit vector -> logit_scale x cosine with each class's prompt embedding -> softmax.
The prompt sets for BI-RADS density are `DENSITY_PROMPTS`. `build_clip_encoder` makes a CLIP
image tower the encoder of a linear probe, and `token_grad_cam_probe` gives Grad-CAM the ViT's
patch tokens.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import keras
import numpy as np
from keras import ops

from mammo_keras.errors import UserError
from mammo_keras.models.clip import CLIPImagePreprocessing, clip_config_of, load_clip


# Class prompts for BI-RADS density A-D ("The breast is " + label is Molina-Roman's).
DENSITY_PROMPTS: dict[str, dict[str, list[str]]] = {
    "paper": {"A": ["The breast is fatty predominance"],
              "B": ["The breast is characterized by scattered areas of pattern density"],
              "C": ["The breast is heterogeneously dense"],
              "D": ["The breast is extremely dense"]},
    "birads": {"A": ["The breasts are almost entirely fatty."],
               "B": ["There are scattered areas of fibroglandular density."],
               "C": ["The breasts are heterogeneously dense, which may obscure small masses."],
               "D": ["The breasts are extremely dense, which lowers the sensitivity of "
                     "mammography."]},
    "mammo_clip": {"A": ["fatty"], "B": ["scattered areas of fibroglandular density"],
                   "C": ["heterogeneously dense"], "D": ["extremely dense"]},
    "mama": {"A": ["The breast is almost entirely fat."],
             "B": ["The breast is scattered fibroglandular densities."],
             "C": ["The breast is heterogeneously dense."],
             "D": ["The breast is extremely dense."]},
}


def resolve_prompts(prompts: str | Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    """A named prompt set of DENSITY_PROMPTS, or {class: prompt or [prompts]} (an ensemble)."""
    if isinstance(prompts, str):
        if prompts not in DENSITY_PROMPTS:
            raise UserError(f"unknown prompt set {prompts!r}; choose one of "
                            f"{sorted(DENSITY_PROMPTS)} or give {{class: [prompts]}}")
        return {name: list(texts) for name, texts in DENSITY_PROMPTS[prompts].items()}
    resolved = {str(name): [texts] if isinstance(texts, str) else [str(t) for t in texts]
                for name, texts in dict(prompts).items()}
    empty = [name for name, texts in resolved.items() if not texts]
    if len(resolved) < 2 or empty:
        raise UserError("prompts need at least two classes, each with one prompt or more"
                        + (f" (none for {empty})" if empty else ""))
    return resolved


def class_text_embeddings(clip: keras.Model, tokenizer, prompts: Mapping[str, Sequence[str]]
                          ) -> np.ndarray:
    """(E, K) unit columns: each class's prompts embedded, normalised, averaged, normalised
    again (CLIP's prompt ensembling)."""
    text = clip.get_layer("text_tower")
    columns = []
    for texts in prompts.values():
        embedded = keras.ops.convert_to_numpy(text(tokenizer(list(texts)))).astype(np.float64)
        embedded /= np.linalg.norm(embedded, axis=1, keepdims=True)
        mean = embedded.mean(axis=0)
        columns.append(mean / np.linalg.norm(mean))
    return np.stack(columns, axis=1).astype(np.float32)


@keras.saving.register_keras_serializable(package="mammo_keras")
class UnitNormalize(keras.layers.Layer):
    """(N, D) -> (N, D) rows scaled to unit L2 norm."""

    def call(self, x):
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


def zero_shot_classifier(clip: keras.Model, tokenizer, prompts, input_size: int | None = None,
                         preprocessing: str = "clip", task: str = "density",
                         name: str = "zero_shot", clip_file: str | None = None) -> keras.Model:
    """An image -> class probabilities model classifying by prompts alone.

    Args:
        clip: a `build_clip` model (random, converted or trained).
        tokenizer: its `CLIPTokenizer`.
        prompts: a DENSITY_PROMPTS name or {class: [prompts]}; the classes, in order.
        input_size: side of the grayscale input (default the tower's image size).
        preprocessing: `CLIPImagePreprocessing` mode, "clip" or "squash".
        clip_file: the CLIP `.keras` file `clip` came from, recorded so that the
            prompts can be changed later (the dashboard does).

    Returns:
        A described functional model (N, S, S, 1) in [0, 1] -> (N, K) probabilities
        softmax(logit_scale x cosine(image, class)), the scaled cosines being its
        "logits" layer and the unit image vector its "embedding".
    """
    from mammo_keras.models.description import describe

    config = clip_config_of(clip)
    resolved = resolve_prompts(prompts)
    size = int(input_size or config.image_size)
    images = keras.Input((size, size, 1), name="image")
    x = CLIPImagePreprocessing(config.image_size, preprocessing, name="clip_preprocessing")(
        images)
    vector = UnitNormalize(name="embedding")(clip.get_layer("image_tower")(x))
    classes = class_text_embeddings(clip, tokenizer, resolved)
    logits_layer = keras.layers.Dense(len(resolved), use_bias=False, dtype="float32",
                                      trainable=False, name="logits")
    logits = logits_layer(vector)
    logits_layer.set_weights([classes * math.exp(config.logit_scale)])
    probabilities = keras.layers.Softmax(name="predictions")(logits)
    model = keras.Model(images, probabilities, name=name)
    return describe(model, task=task, class_names=tuple(resolved), image_size=size,
                    builder={"name": "zero_shot", "arguments": {
                        "prompts": resolved, "preprocessing": preprocessing,
                        "clip": clip_file or clip.name}})


def build_zero_shot(clip: str, prompts="paper", preprocessing: str = "clip",
                    input_shape: tuple = (224, 224, 1), task: str = "density") -> keras.Model:
    """The `model: {builder: zero_shot, clip: biomedclip.keras, prompts: paper}` of a config
    (with `training.epochs: 0`): `zero_shot_classifier` on a converted CLIP `.keras` file, at
    the config's input size. `prompts`: a DENSITY_PROMPTS name or {class: [prompts]}."""
    model, tokenizer = load_clip(clip)
    return zero_shot_classifier(model, tokenizer, prompts, input_size=int(input_shape[0]),
                                preprocessing=preprocessing, task=task,
                                clip_file=str(Path(clip).resolve()))


def zero_shot_settings(model: keras.Model) -> dict | None:
    """{"prompts", "preprocessing", "clip" (its file, when known)} of a zero-shot
    classifier, else None."""
    from mammo_keras.models.description import description_of

    builder = description_of(model).builder or {}
    return dict(builder.get("arguments") or {}) if builder.get("name") == "zero_shot" else None


def build_clip_encoder(clip: str, features: str = "projection", preprocessing: str = "clip",
                       num_classes: int = 4, input_shape: tuple = (224, 224, 1)) -> keras.Model:
    """The `model: {builder: clip_encoder, clip: biomedclip.keras, features: projection}` of a
    config: a CLIP image tower as the encoder of a linear probe (`training.scenario:
    linear_probe`), as Molina-Roman probed BiomedCLIP.

    Args:
        clip: a CLIP `.keras` file.
        features: "projection" (the joint-space vector, after the projection) or
            "pre_projection" (the ViT's class token, before it); the layer "embedding".
        preprocessing: `CLIPImagePreprocessing` mode.

    Returns:
        grayscale (N, S, S, 1) in [0, 1] -> (N, num_classes) probabilities through a new
        "logits" Dense on "embedding" (what the probe trains).
    """
    if features not in ("projection", "pre_projection"):
        raise UserError(f"features must be 'projection' or 'pre_projection', got {features!r}")
    model, _ = load_clip(clip)
    tower = model.get_layer("image_tower")
    config = clip_config_of(model)
    images = keras.Input(tuple(input_shape), name="image")
    x = CLIPImagePreprocessing(config.image_size, preprocessing, name="clip_preprocessing")(
        images)
    x = tower.get_layer("vit")(x)
    x = tower.get_layer("class_token")(x)
    if features == "projection":
        x = tower.get_layer("image_projection")(x)
    vector = keras.layers.Identity(name="embedding")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(vector)
    probabilities = keras.layers.Softmax(name="predictions")(logits)
    return keras.Model(images, probabilities, name=f"{model.name}_{features}")


def token_grad_cam_probe(model: keras.Model) -> keras.Model | None:
    """For a model with a CLIP image tower (zero-shot classifier, `clip_encoder` probe):
    images -> [the patch tokens entering the ViT's last block (N, 1 + g * g, D), the logits
    (N, K)], the grid Grad-CAM weighs for a ViT (the last block's input, as ViT Grad-CAM
    usually takes it); None for any other model. Built for explaining only (not saved):
    keras-hub's ViT runs its blocks inside one layer, so they are called here one by one."""
    names = {layer.name for layer in model.layers}
    if "clip_preprocessing" not in names or "logits" not in names:
        return None
    tower = model.get_layer("image_tower") if "image_tower" in names else model
    vit = tower.get_layer("vit")
    encoder = vit.get_layer("vit_encoder")
    tokens = vit.get_layer("vit_patching_and_embedding")(
        model.get_layer("clip_preprocessing")(model.input))
    for block in encoder.encoder_layers[:-1]:
        tokens = block(tokens)
    x = encoder.layer_norm(encoder.encoder_layers[-1](tokens))
    x = tower.get_layer("class_token")(x)
    if "image_projection" in {layer.name for layer in tower.layers}:
        x = tower.get_layer("image_projection")(x)
    logits = model.get_layer("logits")(model.get_layer("embedding")(x))
    return keras.Model(model.input, [tokens, logits], name=f"{model.name}_token_probe")
