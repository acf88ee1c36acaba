"""The text side of a CLIP model: prompts -> BERT WordPiece token ids, as open_clip's
`HFTokenizer` gives them for BiomedCLIP (uncased WordPiece after ftfy and whitespace
cleaning, [CLS] ... [SEP], truncated and padded with [PAD] = 0 to the context length)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from mammo_keras.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def clean_text(text: str) -> str:
    """open_clip's "whitespace" cleaning: ftfy's fixes (when installed), HTML entities
    unescaped, runs of whitespace made one space, ends stripped."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


class CLIPTokenizer:
    """Texts -> (N, context_length) int32 token ids for a CLIP text tower.

    Args:
        vocabulary: the WordPiece vocabulary in id order (a `vocab.txt`'s lines); it must
            hold [PAD] (id 0), [UNK], [CLS] and [SEP].
        context_length: tokens per text, [CLS] and [SEP] included.
        lowercase: uncased models (BiomedBERT) lowercase and strip accents.
    """

    def __init__(self, vocabulary: Sequence[str], context_length: int = 256,
                 lowercase: bool = True):
        self.vocabulary = [str(token) for token in vocabulary]
        missing = [token for token in SPECIAL_TOKENS if token not in self.vocabulary]
        if missing:
            raise UserError(f"the tokenizer vocabulary lacks {missing}")
        if self.vocabulary.index("[PAD]") != 0:
            raise UserError("the tokenizer vocabulary must have [PAD] at id 0 (BERT's)")
        self.context_length, self.lowercase = int(context_length), bool(lowercase)
        self._ids = {token: index for index, token in enumerate(self.vocabulary)}
        self._wordpiece = None

    @classmethod
    def from_vocab_file(cls, path: str | Path, **options) -> "CLIPTokenizer":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: tokenizer vocabulary not found")
        return cls(path.read_text(encoding="utf-8").splitlines(), **options)

    def to_dict(self) -> dict:
        return {"vocabulary": self.vocabulary, "context_length": self.context_length,
                "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, values: dict) -> "CLIPTokenizer":
        return cls(values["vocabulary"], values["context_length"], values["lowercase"])

    def _pieces(self, texts: list[str]) -> list[list[int]]:
        if self._wordpiece is None:
            from mammo_keras.models.clip import _keras_hub

            self._wordpiece = _keras_hub().tokenizers.WordPieceTokenizer(
                vocabulary=self.vocabulary, lowercase=self.lowercase,
                strip_accents=self.lowercase, oov_token="[UNK]", dtype="int32")
        ragged = self._wordpiece([clean_text(text) for text in texts])
        return [list(np.asarray(row).tolist()) for row in ragged]

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        rows = np.zeros((len(texts), self.context_length), np.int32)  # [PAD] = 0
        for row, pieces in zip(rows, self._pieces(texts)):
            tokens = [self._ids["[CLS]"], *pieces[:self.context_length - 2], self._ids["[SEP]"]]
            row[:len(tokens)] = tokens
        return rows
