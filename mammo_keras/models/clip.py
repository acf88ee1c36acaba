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
Zero-shot classifiers and probes made from such a model: `mammo_keras.models.zero_shot`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import keras
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


# open_clip clamps the learnt log logit scale to [0, ln 100] while training
LOGIT_SCALE_RANGE = (0.0, math.log(100.0))


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

    def problem(self) -> str | None:
        """What makes this config unusable (a logit scale that is not finite or outside
        open_clip's range, a context past the position table), or None."""
        low, high = LOGIT_SCALE_RANGE
        scale = self.logit_scale
        if not (math.isfinite(scale) and low - 1e-3 <= scale <= high + 1e-3):
            return (f"logit_scale is {scale:g}, outside [{low:g}, {high:.4f}] "
                    "(ln 100), where open_clip keeps it")
        if not 1 <= self.context_length <= self.max_positions:
            return (f"context_length {self.context_length} is outside 1..{self.max_positions} "
                    "(the text tower's position table)")
        return None


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
    problem = clip_config_of(model).problem()  # and a clear error for a file that is not CLIP
    if problem:
        raise UserError(f"{path}: {problem}; the model is refused")
    return model, tokenizer_of(model)
