"""Contrastive CLIP training: the loss against NumPy, reports, pairs files, the command line."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("keras_hub", reason="the CLIP models need the clip extra (keras-hub)")

from mammo_keras import cli  # noqa: E402
from mammo_keras.data import load_records, write_synthetic  # noqa: E402
from mammo_keras.errors import UserError  # noqa: E402
from mammo_keras.training.contrastive import (clip_loss, phantom_report,  # noqa: E402
                                              read_pairs, word_vocabulary)


def test_clip_loss_is_the_symmetric_cross_entropy_of_the_diagonal(rng):
    logits = rng.normal(size=(5, 5)).astype(np.float32) * 3

    def cross_entropy(matrix):
        shifted = matrix - matrix.max(1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        return -np.mean(np.diag(log_p))

    expected = (cross_entropy(logits) + cross_entropy(logits.T)) / 2
    assert float(clip_loss(None, logits)) == pytest.approx(expected, rel=1e-5)


def test_phantom_reports_state_density_and_finding_in_report_wording(tmp_path):
    records = load_records("synthetic", write_synthetic(tmp_path / "p", 8, size=256, seed=1))
    rng = np.random.default_rng(0)
    from mammo_keras.training.contrastive import COMPOSITION, FINDINGS

    for record in records:
        text = phantom_report(record, rng)
        assert any(sentence in text for sentence in COMPOSITION[record.density])
        assert any(sentence in text for sentence in FINDINGS[record.label])
    vocabulary = word_vocabulary(["The breasts are fatty.", "Fatty, dense!"])
    assert vocabulary[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    assert {"the", "breasts", "fatty", "dense", ".", ",", "!"} <= set(vocabulary)


def test_a_pairs_file_trains_a_clip_and_makes_a_zero_shot_classifier(tmp_path, capsys):
    data = write_synthetic(tmp_path / "p", 12, size=256, seed=2)
    records = load_records("synthetic", data)
    rng = np.random.default_rng(1)
    with open(tmp_path / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "report"])
        for record in records:
            writer.writerow([record.path, phantom_report(record, rng)])
    out = tmp_path / "clip"
    assert cli.main(["clip", "train", "--pairs", str(tmp_path / "pairs.csv"), "--out", str(out),
                     "--epochs", "12", "--image-size", "32", "--batch-size", "12"]) == 0
    history = list(csv.DictReader(open(out / "history.csv")))
    assert float(history[-1]["loss"]) < float(history[0]["loss"]) - 0.3  # it learns the pairs
    assert cli.main(["clip", "zero-shot", str(out / "clip.keras"), "--prompts", "birads",
                     "--image-size", "48", "--out", str(tmp_path / "zs.keras")]) == 0
    assert "over ['A', 'B', 'C', 'D'] at 48 px" in capsys.readouterr().out
    assert cli.main(["predict", str(tmp_path / "zs.keras"), str(data / "images"),
                     "--out", str(tmp_path / "p.csv")]) == 0  # the films, not their masks
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 12
    assert all(abs(sum(float(row[f"p_{c}"]) for c in "ABCD") - 1) < 1e-4 for row in rows)


def test_a_bad_pairs_file_is_named_with_its_row(tmp_path):
    (tmp_path / "a.csv").write_text("path,text\nx.png,hello\n")
    with pytest.raises(UserError, match="needs the columns path and report"):
        read_pairs(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("path,report\nx.png,\n")
    with pytest.raises(UserError, match=r"b\.csv, row 2: empty path or report"):
        read_pairs(tmp_path / "b.csv")
