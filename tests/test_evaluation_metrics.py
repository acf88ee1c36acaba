"""Evaluation metrics against scikit-learn and NumPy on fixed arrays."""

import numpy as np
import pytest
from sklearn import metrics as sk

from mammo_keras.evaluation import (bootstrap_intervals, classification_metrics,
                                    embedding_metrics, expected_calibration_error)

NAMES = ("normal", "benign", "malignant")


@pytest.fixture
def predictions():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + 1.5 * np.eye(3)[y]  # informative, imperfect
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probabilities


def test_against_scikit_learn(predictions):
    y, p = predictions
    predicted = p.argmax(1)
    m = classification_metrics(y, p, NAMES)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, predicted))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, predicted))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, predicted, average="macro"))
    assert m["weighted_f1"] == pytest.approx(sk.f1_score(y, predicted, average="weighted"))
    assert m["roc_auc_macro"] == pytest.approx(sk.roc_auc_score(y, p, multi_class="ovr",
                                                                average="macro"))
    assert m["quadratic_kappa"] == pytest.approx(sk.cohen_kappa_score(y, predicted,
                                                                      weights="quadratic"))
    assert m["confusion_matrix"] == sk.confusion_matrix(y, predicted).tolist()
    precision, recall, f1, support = sk.precision_recall_fscore_support(y, predicted)
    for k, name in enumerate(NAMES):
        row = m["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision[k], recall[k], f1[k], support[k]))
        negatives = y != k
        assert row["specificity"] == pytest.approx((predicted[negatives] != k).mean())
        assert row["pr_auc"] == pytest.approx(sk.average_precision_score(y == k, p[:, k]))
    assert m["recall_variance"] == pytest.approx(np.var(recall))


def test_sensitivity_at_specificity_by_brute_force(predictions):
    y, p = predictions
    m = classification_metrics(y, p, NAMES, specificities=(0.9,))
    positive, scores = y == 2, p[:, 2]
    best = 0.0
    for threshold in np.unique(scores):
        flagged = scores >= threshold
        if (~flagged[~positive]).mean() >= 0.9:
            best = max(best, flagged[positive].mean())
    assert m["sensitivity_at_specificity"]["malignant@0.9"] == pytest.approx(best)


def test_expected_calibration_error_by_hand():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # two bins: (0.5, 1.0] holds all four; confidence .9 .8 .6 .7, correct 1 0 1 1
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(abs(0.75 - 0.75))
    # ten bins: 0.9 (correct) 0.8 (wrong) 0.6 (correct) 0.7 (correct), each alone
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.6) + abs(1 - 0.7)) / 4
    assert expected_calibration_error(y, p, bins=10) == pytest.approx(expected)


def test_missing_class_and_errors(predictions):
    y, p = predictions
    m = classification_metrics(np.where(y == 1, 0, y), p, NAMES)
    assert m["per_class"]["benign"]["roc_auc"] is None
    assert m["per_class"]["benign"]["support"] == 0
    with pytest.raises(ValueError, match="probability columns"):
        classification_metrics(y, p[:, :2], NAMES)
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics(y + 1, p, NAMES)


def test_bootstrap_intervals(predictions):
    y, p = predictions
    point = classification_metrics(y, p, NAMES)
    intervals = bootstrap_intervals(y, p, NAMES, resamples=300, seed=1)
    for key, (low, high) in intervals.items():
        value = point["per_class"][key[len("recall."):]]["recall"] if key.startswith("recall.") \
            else point[key]
        assert low <= value <= high, key
        assert high - low < 0.3
    assert bootstrap_intervals(y, p, NAMES, resamples=300, seed=1) == intervals
    # patients of 4 identical images: grouped resampling gives wider intervals
    y4, p4 = np.repeat(y[:50], 4), np.repeat(p[:50], 4, axis=0)
    groups = np.repeat(np.arange(50), 4)
    naive = bootstrap_intervals(y4, p4, NAMES, resamples=300, seed=0)["accuracy"]
    grouped = bootstrap_intervals(y4, p4, NAMES, groups=groups, resamples=300,
                                  seed=0)["accuracy"]
    assert grouped[1] - grouped[0] > 1.5 * (naive[1] - naive[0])


def test_embedding_metrics_against_numpy_and_sklearn(rng):
    labels = np.repeat([0, 1, 2], 30)
    compact = rng.normal(size=(90, 8)) * 0.1 + np.eye(3, 8)[labels] * 3
    spread = rng.normal(size=(90, 8)) * 1.0 + np.eye(3, 8)[labels] * 3
    tight, loose = embedding_metrics(compact, labels), embedding_metrics(spread, labels)
    assert tight["intra_class_variance"] < loose["intra_class_variance"]
    assert tight["fisher_ratio"] > loose["fisher_ratio"]
    assert tight["silhouette"] == pytest.approx(sk.silhouette_score(compact, labels))
    expected = np.mean([((compact[labels == k] - compact[labels == k].mean(0)) ** 2)
                        .sum(1).mean() for k in range(3)])
    assert tight["intra_class_variance"] == pytest.approx(expected)


def test_a_class_absent_from_the_set_is_named_not_averaged_in():
    # Class c never occurs: its recall and F1 are undefined, not 0; the macro figures average
    # the classes present, and the interval brackets that same statistic.
    y = np.array([0, 1] * 10)
    p = np.eye(3)[y] * 0.9 + 0.05
    metrics = classification_metrics(y, p, ["a", "b", "c"])
    assert metrics["absent_classes"] == ["c"]
    assert metrics["per_class"]["c"]["recall"] is None and metrics["per_class"]["c"]["f1"] is None
    assert metrics["macro_f1"] == pytest.approx(1.0) == metrics["balanced_accuracy"]
    low, high = bootstrap_intervals(y, p, ["a", "b", "c"], resamples=50)["macro_f1"]
    assert low == high == pytest.approx(1.0)
    assert classification_metrics(y, p[:, :2] / p[:, :2].sum(1, keepdims=True),
                                  ["a", "b"])["absent_classes"] == []


DENSITIES = ("A", "B", "C", "D")


def density_predictions(rng, count: int = 120):
    y = rng.integers(0, 4, count)
    p = rng.dirichlet(np.ones(4), size=count) + 0.6 * np.eye(4)[y]
    return y, p / p.sum(1, keepdims=True)


def test_kappa_weighted_f1_and_per_class_recall_have_intervals(rng):
    y, p = density_predictions(rng, 80)
    intervals = bootstrap_intervals(y, p, DENSITIES, resamples=50, seed=7)
    draws = np.random.default_rng(7)  # the same image resamples, the statistics computed apart
    kappas, f1s, recalls = [], [], []
    for _ in range(50):
        index = draws.integers(80, size=80)
        truth, guess = y[index], p[index].argmax(1)
        kappas.append(sk.cohen_kappa_score(truth, guess, labels=range(4), weights="quadratic"))
        f1s.append(sk.f1_score(truth, guess, labels=range(4), average="weighted"))
        recalls.append(np.mean(guess[truth == 2] == 2))
    for key, values in (("quadratic_kappa", kappas), ("weighted_f1", f1s), ("recall.C", recalls)):
        np.testing.assert_allclose(intervals[key], np.quantile(values, [0.025, 0.975]))


def test_dense_view_collapses_a_density_model_to_dense_vs_non_dense(rng):
    from mammo_keras.evaluation import dense_view

    y, p = density_predictions(rng)
    view = dense_view(y, p, DENSITIES, groups=np.arange(120) // 4, resamples=200)
    dense, called = y >= 2, p.argmax(1) >= 2
    assert (view["dense"], view["non_dense"]) == (["C", "D"], ["A", "B"])
    assert view["accuracy"] == pytest.approx(np.mean(dense == called))
    assert view["sensitivity"] == pytest.approx(sk.recall_score(dense, called))
    assert view["specificity"] == pytest.approx(sk.recall_score(~dense, ~called))
    assert view["roc_auc"] == pytest.approx(sk.roc_auc_score(dense, p[:, 2] + p[:, 3]))
    assert view["dense_images"] == int(dense.sum()) and view["images"] == 120
    for key in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        low, high = view["confidence_intervals"][key]
        assert low <= view[key] <= high and high - low < 0.4
    mias = dense_view(y[y < 3], p[y < 3][:, :3] / p[y < 3][:, :3].sum(1, keepdims=True),
                      ("F", "G", "D"), resamples=0)
    assert (mias["dense"], mias["non_dense"]) == (["D"], ["F", "G"])
    assert dense_view(y % 3, p[:, :3], NAMES) is None  # not a density scale
