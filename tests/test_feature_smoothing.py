"""FeatureSmoothingLoss maths against NumPy / Keras, and FeatureSmoothingModel training behaviour."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mammo_keras.losses import FeatureSmoothingLoss
from mammo_keras.models import FeatureSmoothingModel, build_classifier


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def random_batch(rng, n=12, k=3, d=5):
    labels = np.arange(n) % k
    onehot = np.eye(k, dtype="float32")[labels]
    logits = rng.normal(size=(n, k))
    probabilities = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype("float32")
    embedding = rng.normal(size=(n, d)).astype("float32")
    return labels, onehot, probabilities, embedding


def test_cross_entropy_matches_keras_categorical_crossentropy(rng):
    _, onehot, probabilities, _ = random_batch(rng)
    ours = FeatureSmoothingLoss(label_smoothing=0.1).cross_entropy(onehot, probabilities)
    reference = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(onehot, probabilities)
    np.testing.assert_allclose(to_numpy(ours), to_numpy(reference), rtol=1e-5)


def test_class_and_sample_weights_against_numpy(rng):
    labels, onehot, probabilities, _ = random_batch(rng)
    class_weights = [0.5, 1.0, 3.0]
    sample_weight = rng.uniform(size=len(labels)).astype("float32")
    loss = FeatureSmoothingLoss(label_smoothing=0.2, class_weights=class_weights)
    ours = loss.cross_entropy(onehot, probabilities, sample_weight)
    targets = onehot * 0.8 + 0.2 / 3
    per_sample = -(targets * np.log(probabilities)).sum(1)
    expected = np.mean(per_sample * np.asarray(class_weights)[labels] * sample_weight)
    np.testing.assert_allclose(to_numpy(ours), expected, rtol=1e-5)


def test_smoothing_term_and_total_against_numpy(rng):
    labels, onehot, probabilities, embedding = random_batch(rng)
    centres = rng.normal(size=(3, 5)).astype("float32")
    expected_term = np.mean(((embedding - centres[labels]) ** 2).sum(1))
    term = FeatureSmoothingLoss.smoothing_term(onehot, embedding, centres)
    np.testing.assert_allclose(to_numpy(term), expected_term, rtol=1e-5)
    loss = FeatureSmoothingLoss(lam=0.1, label_smoothing=0.0)
    expected_ce = np.mean(-np.log(probabilities[np.arange(len(labels)), labels]))
    np.testing.assert_allclose(to_numpy(loss(onehot, probabilities, embedding, centres)),
                               expected_ce + 0.1 * expected_term, rtol=1e-5)


def test_ema_centres_step_by_step(rng):
    loss = FeatureSmoothingLoss(momentum=0.9)
    centres, seen = np.zeros((3, 4), "float32"), np.zeros(3, "float32")
    first = rng.normal(size=(4, 4)).astype("float32")
    first_labels = np.array([0, 0, 1, 1])  # class 2 absent
    centres, seen = map(to_numpy, loss.updated_centres(
        np.eye(3, dtype="float32")[first_labels], first, centres, seen))
    np.testing.assert_allclose(centres[0], first[:2].mean(0), rtol=1e-6)  # first sight: the mean
    np.testing.assert_allclose(centres[1], first[2:].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(centres[2], 0.0)
    np.testing.assert_array_equal(seen, [1, 1, 0])
    second = rng.normal(size=(3, 4)).astype("float32")
    second_labels = np.array([0, 2, 2])
    previous = centres.copy()
    centres, seen = map(to_numpy, loss.updated_centres(
        np.eye(3, dtype="float32")[second_labels], second, centres, seen))
    np.testing.assert_allclose(centres[0], 0.9 * previous[0] + 0.1 * second[0], rtol=1e-5)
    np.testing.assert_array_equal(centres[1], previous[1])  # absent: unchanged
    np.testing.assert_allclose(centres[2], second[1:].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(seen, [1, 1, 1])


def test_batch_mode_centres_are_the_batch_means(rng):
    labels, onehot, _, embedding = random_batch(rng)
    old = np.ones((3, 5), "float32")
    centres, _ = FeatureSmoothingLoss(centres="batch").updated_centres(
        onehot, embedding, old, np.ones(3, "float32"))
    for k in range(3):
        np.testing.assert_allclose(to_numpy(centres)[k], embedding[labels == k].mean(0), rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"lam": -1}, {"momentum": 1.0}, {"centres": "median"},
                                    {"label_smoothing": 1.0}])
def test_invalid_loss_arguments(kwargs):
    with pytest.raises(ValueError):
        FeatureSmoothingLoss(**kwargs)


def test_loss_config_round_trip():
    loss = FeatureSmoothingLoss(lam=0.02, momentum=0.8, centres="batch", class_weights=[1, 2])
    assert FeatureSmoothingLoss.from_config(loss.get_config()).get_config() == loss.get_config()


def test_smoothing_gradient_reaches_the_backbone_and_not_the_centres(rng):
    classifier = build_classifier("baseline_cnn", "gagm_se", input_shape=(32, 32, 1))
    trainer = FeatureSmoothingModel(classifier, FeatureSmoothingLoss(lam=1.0))
    x = rng.uniform(size=(6, 32, 32, 1)).astype("float32")
    onehot = np.eye(3, dtype="float32")[np.arange(6) % 3]
    first_conv = classifier.get_layer("baseline_cnn_stage1_block1_conv").kernel
    centres = tf.Variable(rng.normal(size=(3, 512)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        embedding = trainer(x, training=True)["embedding"]
        term = FeatureSmoothingLoss.smoothing_term(onehot, embedding, centres)
    gradient = tape.gradient(term, first_conv)
    assert gradient is not None and np.all(np.isfinite(gradient)) and np.abs(gradient).sum() > 0
    assert tape.gradient(term, centres) is None


def test_trainer_state_and_interface():
    classifier = build_classifier("baseline_cnn", "gap", input_shape=(32, 32, 1))
    trainer = FeatureSmoothingModel(classifier)
    assert len(trainer.trainable_weights) == len(classifier.trainable_weights)
    names = {w.name for w in trainer.non_trainable_weights}
    assert {"class_centres", "centre_seen"} <= names
    assert tuple(trainer.class_centres.shape) == (3, 256)
    with pytest.raises(ValueError, match="without `loss`"):
        trainer.compile(optimizer="adam", loss="categorical_crossentropy")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match="no layer named 'embedding'"):
        FeatureSmoothingModel(plain)


def toy_set(n_per_class=24, size=32, seed=0):
    """Three classes: a bright square in a class-specific corner, random brightness and noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 0.08, size=(3 * n_per_class, size, size, 1))
    y = np.repeat(np.arange(3), n_per_class)
    corners = [(2, 2), (2, size // 2), (size // 2, 8)]
    for i, label in enumerate(y):
        top, left = corners[label]
        x[i, top:top + 12, left:left + 12] += rng.uniform(0.2, 0.6)
    order = rng.permutation(len(y))
    return np.clip(x[order], 0, 1).astype("float32"), y[order]


def intra_class_variance(embedding: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([((embedding[labels == k] - embedding[labels == k].mean(0)) ** 2)
                          .sum(1).mean() for k in np.unique(labels)]))


def train_and_measure(lam: float, x, y) -> tuple[float, dict]:
    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    classifier = build_classifier("baseline_cnn", "gap", input_shape=x.shape[1:], dropout=0.0)
    trainer = FeatureSmoothingModel(classifier, FeatureSmoothingLoss(lam=lam, label_smoothing=0.0))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    history = trainer.fit(x, y, batch_size=24, epochs=8, shuffle=False, verbose=0).history
    # After 24 steps the BatchNorm moving averages are still far from the data's statistics, so
    # the embeddings are taken with the statistics of the whole toy set (one batch, training
    # mode, dropout 0): what converged moving averages give, and what the loss acted on.
    embedding = keras.ops.convert_to_numpy(trainer(x, training=True)["embedding"])
    return intra_class_variance(embedding, y), history


def test_feature_smoothing_lowers_intra_class_variance():
    x, y = toy_set()
    variance_without, history_without = train_and_measure(0.0, x, y)
    variance_with, history_with = train_and_measure(0.1, x, y)
    assert variance_with < 0.5 * variance_without, (variance_with, variance_without)
    # the smoothing metric is reported in both runs, and both runs learn the task
    assert history_with["feature_smoothing"][-1] < history_without["feature_smoothing"][-1]
    assert history_without["loss"][-1] < history_without["loss"][0]
    assert history_with["cross_entropy"][-1] < history_with["cross_entropy"][0]


def test_one_hot_labels_and_evaluate(rng):
    x, y = toy_set(n_per_class=4)
    classifier = build_classifier("baseline_cnn", "gagm", input_shape=x.shape[1:])
    trainer = FeatureSmoothingModel(classifier, FeatureSmoothingLoss(lam=0.05))
    trainer.compile(optimizer="adam", metrics=["categorical_accuracy"])
    trainer.fit(x, np.eye(3, dtype="float32")[y], batch_size=6, epochs=1, verbose=0)
    np.testing.assert_array_equal(trainer.centre_seen.numpy(), [1, 1, 1])
    result = trainer.evaluate(x, np.eye(3, dtype="float32")[y], verbose=0, return_dict=True)
    assert set(result) == {"loss", "cross_entropy", "feature_smoothing", "categorical_accuracy"}
    assert np.isfinite(result["loss"])


def test_trainer_round_trips_through_a_keras_file_with_its_state(tmp_path):
    x, y = toy_set(n_per_class=4)
    classifier = build_classifier("baseline_cnn", "gagm_se", input_shape=x.shape[1:])
    trainer = FeatureSmoothingModel(classifier, FeatureSmoothingLoss(lam=0.1, momentum=0.8))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    trainer.fit(x, y, batch_size=6, epochs=1, verbose=0)
    trainer.save(tmp_path / "trainer.keras")
    loaded = keras.saving.load_model(tmp_path / "trainer.keras")
    assert isinstance(loaded, FeatureSmoothingModel)
    assert loaded.smoothing_loss.get_config() == trainer.smoothing_loss.get_config()
    np.testing.assert_array_equal(loaded.class_centres.numpy(), trainer.class_centres.numpy())
    np.testing.assert_array_equal(loaded.centre_seen.numpy(), [1, 1, 1])
    assert int(loaded.optimizer.iterations.numpy()) == int(trainer.optimizer.iterations.numpy()) == 2
    for ours, theirs in zip(loaded.optimizer.variables, trainer.optimizer.variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0)["probabilities"],
                                  trainer.predict(x, verbose=0)["probabilities"])
