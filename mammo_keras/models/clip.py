"""BiomedCLIP-style vision-language models in Keras, and zero-shot classifiers made from them.

The architecture is BiomedCLIP's as open_clip builds it (../shared/PAPERS.md section 2):

    image tower  images (N, S, S, 3), CLIP-normalised
                 -> keras-hub ViTBackbone (pre-norm, class token, exact GELU, final LayerNorm)
                 -> class token -> Dense(embed_dim, no bias) "image_projection"
    text tower   token ids (N, L), 0 = padding
                 -> word + position + segment-0 embeddings -> LayerNorm (eps 1e-12)
                 -> keras-hub TransformerEncoder x layers (post-norm, exact GELU, as BERT)
                 -> [CLS] -> Dense(hidden, no bias) -> GELU -> Dense(embed_dim, no bias)

keras-hub's BertBackbone is not used for the text tower: it computes GELU with the tanh
approximation where BiomedBERT uses erf, a 1e-3 difference in the logits. keras-hub is an
optional extra (`pip install "mammo-keras[clip]"`).

`build_clip(config)` gives a model {"images", "token_ids"} -> {"image_embedding",
"text_embedding"} (unnormalised, as open_clip's `encode_image` / `encode_text` with
normalize=False); its `logit_scale` and tokenizer settings travel in its description.
`zero_shot_classifier(clip, tokenizer, prompts)` gives an ordinary image -> class
probabilities model: grayscale (N, S, S, 1) in [0, 1] -> `CLIPImagePreprocessing` -> image
tower -> unit vector -> logit_scale x cosine with each class's prompt embedding -> softmax.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

import keras
import numpy as np
from keras import ops

from mammo_keras.errors import UserError

# CLIP's image normalisation (open_clip's OPENAI_DATASET_MEAN / STD), which BiomedCLIP keeps
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESSING_MODES = ("clip", "squash")


def _keras_hub():
    try:
        import keras_hub
    except ImportError as error:
        raise UserError("the vision-language models need keras-hub: pip install "
                        "\"mammo-keras[clip]\"") from error
    return keras_hub


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    """Sizes of a BiomedCLIP-style model; the defaults are BiomedCLIP's (ViT-B/16 +
    PubMedBERT-base, 512-d joint space, context 256)."""

    embed_dim: int = 512
    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_mlp: int = 3072
    vocab_size: int = 30522
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_intermediate: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    projection_hidden: int = 640
    context_length: int = 256
    logit_scale: float = math.log(1 / 0.07)  # open_clip's initial value; a checkpoint's own wins

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@keras.saving.register_keras_serializable(package="mammo_keras")
class ClassToken(keras.layers.Layer):
    """(N, T, D) token sequence -> (N, D): the first ([CLS] / class) token."""

    def call(self, tokens):
        return tokens[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="mammo_keras")
class TextEmbeddings(keras.layers.Layer):
    """BERT's input embeddings: word + position + segment 0, then LayerNorm (eps 1e-12).

    Input (N, L) int token ids, L <= max_positions; output (N, L, width) float.
    """

    def __init__(self, vocab_size: int, width: int, max_positions: int,
                 type_vocab_size: int = 2, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.width, self.max_positions = vocab_size, width, max_positions
        self.type_vocab_size, self.epsilon = type_vocab_size, epsilon
        self.word = keras.layers.Embedding(vocab_size, width, name="word_embeddings")
        self.position = keras.layers.Embedding(max_positions, width, name="position_embeddings")
        self.segment = keras.layers.Embedding(type_vocab_size, width,
                                              name="token_type_embeddings")
        self.norm = keras.layers.LayerNormalization(epsilon=epsilon, name="layer_norm")

    def build(self, input_shape):
        for layer in (self.word, self.position, self.segment):
            layer.build(input_shape)
        self.norm.build((None, None, self.width))

    def call(self, token_ids):
        positions = ops.arange(ops.shape(token_ids)[1])
        embedded = (self.word(token_ids) + self.position(positions)[None]
                    + self.segment(ops.zeros_like(token_ids)))
        return self.norm(embedded)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.width)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "width": self.width,
                "max_positions": self.max_positions, "type_vocab_size": self.type_vocab_size,
                "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="mammo_keras")
class CLIPImagePreprocessing(keras.layers.Layer):
    """Grayscale (N, H, W, 1) in [0, 1] -> the (N, size, size, 3) input of a CLIP image tower.

    mode "clip": the published transform: bicubic resize of the shortest side to `size`,
    centre crop, (x - mean) / std per channel. mode "squash": Molina-Roman's own (what
    their numbers used): resize to size x size, aspect ignored, no normalisation.
    """

    def __init__(self, size: int = 224, mode: str = "clip", mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise UserError(f"CLIP preprocessing mode must be one of {list(PREPROCESSING_MODES)}"
                            f", got {mode!r}")
        self.size, self.mode = int(size), mode
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)

    def call(self, images):
        rgb = ops.repeat(images, 3, axis=-1)
        if self.mode == "squash":
            return ops.image.resize(rgb, (self.size, self.size), interpolation="bilinear")
        height, width = images.shape[1], images.shape[2]
        if (height, width) != (self.size, self.size):
            scale = self.size / min(height, width)
            resized = (max(self.size, round(height * scale)), max(self.size, round(width * scale)))
            rgb = ops.image.resize(rgb, resized, interpolation="bicubic")
            top, left = (resized[0] - self.size) // 2, (resized[1] - self.size) // 2
            rgb = rgb[:, top:top + self.size, left:left + self.size, :]
        return (rgb - ops.convert_to_tensor(self.mean)) / ops.convert_to_tensor(self.std)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, 3)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "mode": self.mode,
                "mean": list(self.mean), "std": list(self.std)}


def image_tower(config: CLIPConfig, name: str = "image_tower") -> keras.Model:
    """(N, S, S, 3) CLIP-normalised images -> (N, embed_dim) image embeddings."""
    keras_hub = _keras_hub()
    vit = keras_hub.models.ViTBackbone(
        image_shape=(config.image_size, config.image_size, 3), patch_size=config.patch_size,
        num_layers=config.vision_layers, num_heads=config.vision_heads,
        hidden_dim=config.vision_width, mlp_dim=config.vision_mlp, layer_norm_epsilon=1e-6,
        name="vit")
    images = keras.Input((config.image_size, config.image_size, 3), name="images")
    features = ClassToken(name="class_token")(vit(images))
    embedding = keras.layers.Dense(config.embed_dim, use_bias=False,
                                   name="image_projection")(features)
    return keras.Model(images, embedding, name=name)


def text_tower(config: CLIPConfig, name: str = "text_tower") -> keras.Model:
    """(N, L) int32 token ids (0 = padding) -> (N, embed_dim) text embeddings."""
    keras_hub = _keras_hub()
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = TextEmbeddings(config.vocab_size, config.text_width, config.max_positions,
                       config.type_vocab_size, name="text_embeddings")(token_ids)
    padding = ops.not_equal(token_ids, 0)  # attention to padding tokens is masked, as in BERT
    for index in range(config.text_layers):
        x = keras_hub.layers.TransformerEncoder(
            config.text_intermediate, config.text_heads, activation="gelu",
            layer_norm_epsilon=1e-12, normalize_first=False,
            name=f"text_layer_{index}")(x, padding_mask=padding)
    pooled = ClassToken(name="cls_token")(x)
    hidden = keras.layers.Dense(config.projection_hidden, use_bias=False, activation="gelu",
                                name="text_projection_hidden")(pooled)
    embedding = keras.layers.Dense(config.embed_dim, use_bias=False,
                                   name="text_projection")(hidden)
    return keras.Model(token_ids, embedding, name=name)


def build_clip(config: CLIPConfig | None = None, tokenizer: dict | None = None,
               name: str = "biomedclip") -> keras.Model:
    """A BiomedCLIP-style model {"images" (N, S, S, 3), "token_ids" (M, L)} ->
    {"image_embedding" (N, E), "text_embedding" (M, E)}, randomly initialised; its
    description holds `config` (logit_scale included) and the `tokenizer` settings."""
    from mammo_keras.models.description import describe

    config = config or CLIPConfig()
    images = keras.Input((config.image_size, config.image_size, 3), name="images")
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    outputs = {"image_embedding": image_tower(config)(images),
               "text_embedding": text_tower(config)(token_ids)}
    model = keras.Model({"images": images, "token_ids": token_ids}, outputs, name=name)
    return describe(model, task=None, image_size=config.image_size,
                    builder={"name": "clip", "arguments": {"config": config.to_dict(),
                                                           "tokenizer": tokenizer}})


def clip_config_of(model: keras.Model) -> CLIPConfig:
    """The `CLIPConfig` a `build_clip` model (or its loaded `.keras` file) was made with."""
    from mammo_keras.models.description import description_of

    builder = description_of(model).builder or {}
    if builder.get("name") != "clip":
        raise UserError(f"model {model.name!r} is not a CLIP model made by mammo-keras "
                        "(build_clip / mammo-keras convert open_clip)")
    return CLIPConfig(**builder["arguments"]["config"])


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


def tokenizer_of(clip: keras.Model):
    """The `CLIPTokenizer` a `build_clip` model carries in its description."""
    from mammo_keras.models.clip_tokenizer import CLIPTokenizer
    from mammo_keras.models.description import description_of

    settings = ((description_of(clip).builder or {}).get("arguments") or {}).get("tokenizer")
    if not settings:
        raise UserError(f"model {clip.name!r} carries no tokenizer; convert it with "
                        "`mammo-keras convert open_clip` or give build_clip a tokenizer")
    return CLIPTokenizer.from_dict(settings)


def load_clip(path) -> tuple[keras.Model, "object"]:
    """(model, tokenizer) of a CLIP `.keras` file (`mammo-keras convert open_clip`)."""
    from mammo_keras.models.loading import load_model

    model = load_model(path)
    clip_config_of(model)  # a clear error for a file that is not a CLIP model
    return model, tokenizer_of(model)


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
