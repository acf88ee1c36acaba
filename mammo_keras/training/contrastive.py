"""Contrastive (CLIP) training of a vision-language model on image / report pairs.

No published CLIP weights can be downloaded here, so the zero-shot path is shown to learn
on phantoms: each phantom gets a short report written the way screening reports are
(`phantom_report`: BI-RADS breast composition and the finding, in varied wording), a small
model of BiomedCLIP's design (`mammo_keras.models.clip`) learns to match images and reports
with CLIP's symmetric InfoNCE loss, and held-out patients are then classified by class
prompts alone (`zero_shot_classifier`). The same code trains on a user's own pairs: a CSV
of image path and report text (`mammo-keras clip train --pairs pairs.csv`).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
from keras import ops

from mammo_keras.data import DataReport, Record, load_dataset
from mammo_keras.errors import UserError
from mammo_keras.models.clip import CLIPConfig, CLIPImagePreprocessing, build_clip, tokenizer_of
from mammo_keras.models.clip_tokenizer import SPECIAL_TOKENS, CLIPTokenizer

# BI-RADS (5th edition) breast composition, in the atlas' wording and in shorter forms
COMPOSITION = {
    "A": ("The breasts are almost entirely fatty.", "Almost entirely fatty breast tissue.",
          "Fatty breasts."),
    "B": ("There are scattered areas of fibroglandular density.",
          "Scattered fibroglandular densities.", "Scattered areas of fibroglandular tissue."),
    "C": ("The breasts are heterogeneously dense, which may obscure small masses.",
          "Heterogeneously dense breast tissue.", "Heterogeneously dense breasts."),
    "D": ("The breasts are extremely dense, which lowers the sensitivity of mammography.",
          "Extremely dense breast tissue.", "Extremely dense breasts."),
}
FINDINGS = {
    "normal": ("No suspicious mass or calcification.", "No mammographic evidence of malignancy.",
               "Negative study."),
    "benign": ("A circumscribed oval mass, probably benign.",
               "Well-defined mass with benign features.", "Benign-appearing finding."),
    "malignant": ("An irregular spiculated mass, highly suggestive of malignancy.",
                  "Suspicious finding with malignant features.",
                  "Spiculated lesion suspicious for cancer."),
}
VIEWS = {"CC": "craniocaudal", "MLO": "mediolateral oblique"}
SIDES = {"L": "left", "R": "right"}


def phantom_report(record: Record, rng: np.random.Generator) -> str:
    """A screening-report sentence for a phantom, from its density, finding, view and side."""
    parts = []
    if record.view in VIEWS or record.laterality in SIDES:
        parts.append(f"{SIDES.get(record.laterality, '').capitalize()} "
                     f"{VIEWS.get(record.view, '')} view.".replace("  ", " ").strip())
    if record.density in COMPOSITION:
        parts.append(str(rng.choice(COMPOSITION[record.density])))
    if record.label in FINDINGS:
        parts.append(str(rng.choice(FINDINGS[record.label])))
    return " ".join(parts)


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(image path, report) rows of a CSV with columns `path` and `report` (paths relative
    to the CSV's folder allowed); one-line errors naming the file and row."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: pairs file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "report"} - set(reader.fieldnames or ())
        if missing:
            raise UserError(f"{path}: needs the columns path and report (missing "
                            f"{sorted(missing)})")
        pairs = []
        for number, row in enumerate(reader, start=2):
            if not (row["path"] or "").strip() or not (row["report"] or "").strip():
                raise UserError(f"{path}, row {number}: empty path or report")
            image = Path(row["path"])
            pairs.append((str(image if image.is_absolute() else path.parent / image),
                          row["report"].strip()))
    if not pairs:
        raise UserError(f"{path}: no pairs")
    return pairs


def word_vocabulary(texts: Sequence[str], minimum_count: int = 1) -> list[str]:
    """A whole-word WordPiece vocabulary of `texts` (lowercased words and punctuation), the
    special tokens first ([PAD] = 0): what a text tower trained from nothing reads."""
    counts: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    words = sorted(word for word, count in counts.items() if count >= minimum_count)
    return [*SPECIAL_TOKENS, "[MASK]", *words]


@keras.saving.register_keras_serializable(package="mammo_keras")
class ScaledCosine(keras.layers.Layer):
    """(N, E) image and (N, E) text embeddings -> (N, N) logits exp(s) x cosine, s trainable,
    initialised at `initial` and kept at most log(100) (CLIP's clamp)."""

    def __init__(self, initial: float = math.log(1 / 0.07), **kwargs):
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape):
        self.logit_scale = self.add_weight(name="logit_scale", shape=(),
                                           initializer=keras.initializers.Constant(self.initial))

    def call(self, image, text):
        def unit(x):
            return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), -1, keepdims=True), 1e-12))

        scale = ops.exp(ops.minimum(self.logit_scale, math.log(100.0)))
        return scale * ops.matmul(unit(image), ops.transpose(unit(text)))

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


def clip_loss(_, logits):
    """CLIP's symmetric InfoNCE: image i belongs with text i, in both directions."""
    labels = ops.arange(ops.shape(logits)[0])
    images = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    texts = keras.losses.sparse_categorical_crossentropy(labels, ops.transpose(logits),
                                                         from_logits=True)
    return (ops.mean(images) + ops.mean(texts)) / 2


def contrastive_model(clip: keras.Model, input_size: int) -> keras.Model:
    """grayscale (N, S, S, 1) in [0, 1] and token ids (N, L) -> (N, N) image-text logits."""
    tower_size = clip.get_layer("image_tower").input.shape[1]
    images = keras.Input((input_size, input_size, 1), name="image")
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    pixels = CLIPImagePreprocessing(tower_size, "clip", name="clip_preprocessing")(images)
    logits = ScaledCosine(name="scaled_cosine")(clip.get_layer("image_tower")(pixels),
                                                clip.get_layer("text_tower")(token_ids))
    return keras.Model([images, token_ids], logits, name="contrastive")


def small_clip_config(vocab_size: int, image_size: int = 64) -> CLIPConfig:
    """A CLIP of BiomedCLIP's design small enough to train on a 2-core CPU (0.5 M weights)."""
    return CLIPConfig(embed_dim=64, image_size=image_size, patch_size=8, vision_width=64,
                      vision_layers=4, vision_heads=4, vision_mlp=128, vocab_size=vocab_size,
                      text_width=64, text_layers=2, text_heads=4, text_intermediate=128,
                      max_positions=64, projection_hidden=64, context_length=48)


def train_contrastive(records: Sequence[Record], reports: Sequence[str], *,
                      image_size: int = 64, epochs: int = 30, batch_size: int = 32,
                      learning_rate: float = 1e-3, seed: int = 0,
                      clip: keras.Model | None = None, report: DataReport | None = None,
                      verbose: int = 0) -> tuple[keras.Model, list[dict]]:
    """Train a CLIP model (a new `small_clip_config` one unless `clip` is given) on
    (record image, report) pairs.

    Returns (the CLIP model with its learnt logit scale and tokenizer, one history row per
    epoch). Images are read once through the usual pipeline (crop, flip, resize to
    `image_size`); reports are tokenized with the model's tokenizer (a whole-word vocabulary
    of `reports` for a new model).
    """
    if len(records) != len(reports) or not records:
        raise UserError(f"{len(records)} images for {len(reports)} reports")
    keras.utils.set_random_seed(seed)
    report = report if report is not None else DataReport()
    if clip is None:
        vocabulary = word_vocabulary(reports)
        config = small_clip_config(len(vocabulary), image_size)
        tokenizer = CLIPTokenizer(vocabulary, context_length=config.context_length)
        clip = build_clip(config, tokenizer=tokenizer.to_dict(), name="clip_trained")
    tokenizer = tokenizer_of(clip)
    images = np.concatenate([batch for batch, _ in load_dataset(
        records, target=None, image_size=image_size, batch_size=64, report=report)])
    kept = {record.path for record in report.kept(records)}
    texts = [text for record, text in zip(records, reports) if record.path in kept]
    tokens = tokenizer(texts)
    trainer = contrastive_model(clip, image_size)
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=0.1)
    # as CLIP: no decay of the temperature, biases and normalisation gains
    optimizer.exclude_from_weight_decay(var_names=["logit_scale", "bias", "gamma", "beta"])
    trainer.compile(optimizer=optimizer, loss=clip_loss)
    dummy = np.zeros((len(images),), np.float32)
    history = trainer.fit([images, tokens], dummy, batch_size=min(batch_size, len(images)),
                          epochs=epochs, shuffle=True, verbose=verbose).history
    scale = float(keras.ops.convert_to_numpy(
        trainer.get_layer("scaled_cosine").logit_scale))
    from mammo_keras.models.description import describe, description_of

    builder = dict(description_of(clip).builder)
    arguments = dict(builder["arguments"])
    arguments["config"] = {**arguments["config"], "logit_scale": min(scale, math.log(100.0))}
    describe(clip, builder={**builder, "arguments": arguments})
    rows = [{"epoch": index + 1, "loss": float(value)}
            for index, value in enumerate(history["loss"])]
    return clip, rows
