"""load_dataset: the tf.data pipeline on written synthetic data, bad files, tasks and options."""

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from mammo_keras.data import load_records, preprocess, read_image, write_synthetic
from mammo_keras.data.pipeline import DataReport, load_dataset
from mammo_keras.data.targets import TargetSpec


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("synthetic"), 18, size=256, fmt="dicom", seed=0)
    return load_records(root)


def collect(dataset):
    images, targets = [], []
    for x, y in dataset:
        images.append(x.numpy())
        targets.append(y.numpy())
    return np.concatenate(images), np.concatenate(targets)


def test_batches_equal_the_shared_preprocessing_in_record_order(records):
    images, labels = collect(load_dataset(records, image_size=64, batch_size=5))
    assert images.shape == (18, 64, 64, 1) and images.dtype == np.float32
    assert list(labels) == [("normal", "benign", "malignant").index(r.label) for r in records]
    for index in (0, 7):
        expected, _ = preprocess(read_image(records[index].path)[0], 64)
        np.testing.assert_array_equal(images[index], expected.numpy())


def test_bad_files_are_skipped_and_reported(records, tmp_path):
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    unlabelled = dataclasses.replace(records[1], label=None)
    bad = [dataclasses.replace(records[0], path=str(broken)), unlabelled]
    report = DataReport()
    with warnings.catch_warnings(record=True) as told:  # the report's owner lists them: once
        warnings.simplefilter("always")
        images, _ = collect(load_dataset(list(records) + bad, image_size=32, batch_size=4,
                                         report=report))
    assert not [warning for warning in told if "skipped" in str(warning.message)]
    with pytest.warns(UserWarning, match="skipped"):  # no report to read: each is announced
        collect(load_dataset(list(records) + bad, image_size=32, batch_size=4))
    assert len(images) == 18
    problems = [str(error) for error in report.skipped]
    assert len(problems) == 2
    assert any(p.startswith(str(broken)) for p in problems)
    assert any("no label among" in p for p in problems)


def test_segmentation_masks_follow_the_images(records):
    images, masks = collect(load_dataset(records, target=TargetSpec(None, masks=True),
                                         image_size=64, batch_size=6))
    assert masks.shape == images.shape and set(np.unique(masks)) <= {0.0, 1.0}
    lesioned = [i for i, r in enumerate(records) if r.label != "normal"]
    assert all(masks[i].sum() > 0 for i in lesioned if records[i].extra["finding"].endswith("mass"))
    assert all(masks[i].sum() == 0 for i, r in enumerate(records) if r.label == "normal")


def test_density_task_uses_birads_classes(records):
    _, targets = collect(load_dataset(records, target="density", image_size=32, batch_size=6))
    assert list(targets) == ["ABCD".index(r.density) for r in records]


def test_training_shuffles_and_augments_evaluation_does_not(records):
    evaluation = load_dataset(records, image_size=32, batch_size=18)
    first, second = collect(evaluation)[0], collect(evaluation)[0]
    np.testing.assert_array_equal(first, second)
    training = load_dataset(records, image_size=32, batch_size=18, training=True, seed=1)
    epoch_one, labels_one = collect(training)
    epoch_two, labels_two = collect(training)
    assert not np.array_equal(epoch_one, epoch_two)
    assert sorted(labels_one) == sorted(labels_two)
    assert 0.0 <= epoch_one.min() and epoch_one.max() <= 1.0


def test_balanced_sampling_draws_classes_equally(records):
    dataset = load_dataset(records, image_size=32, batch_size=12, training=True, balanced=True,
                           augment=False)
    counts = np.zeros(3)
    for _, labels in dataset.take(25):
        counts += np.bincount(labels.numpy(), minlength=3)
    assert counts.min() > 0.8 * counts.mean()
    with pytest.raises(ValueError, match="balanced sampling"):
        load_dataset(records, balanced=True)


def test_a_target_field_no_record_has_is_refused(records):
    with pytest.raises(ValueError, match="no record has the field 'age'"):
        load_dataset(records, target="age")


def test_the_deprecated_task_argument_still_reads_its_field(records):
    with pytest.warns(DeprecationWarning, match="target="):
        dataset = load_dataset(records, task="density", image_size=32, batch_size=64)
    _, targets = next(iter(dataset))
    expected = [("A", "B", "C", "D").index(r.density) for r in records if r.density]
    assert sorted(targets.numpy().tolist()) == sorted(expected)
    with pytest.raises(ValueError, match="pass target="):
        load_dataset(records, task="age")


def test_a_model_trains_from_the_pipeline(records):
    from mammo_keras.models import build_classifier

    model = build_classifier("baseline_cnn", "gagm_se", num_classes=3, input_shape=(64, 64, 1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(load_dataset(records, image_size=64, batch_size=6, training=True),
                        epochs=2, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert isinstance(model.predict(load_dataset(records, image_size=64, batch_size=6), verbose=0),
                      np.ndarray)


# --- the row store: training shuffles row numbers, not images ------------------------------

def test_the_row_store_gives_the_uncached_images_and_reshuffles_each_epoch(records, tmp_path):
    from mammo_keras.data.image_store import ImageStore

    cache = tmp_path / "train-32"
    stored = load_dataset(records, image_size=32, batch_size=18, cache=str(cache))
    plain = load_dataset(records, image_size=32, batch_size=18, cache=False)
    np.testing.assert_array_equal(collect(stored)[0], collect(plain)[0])
    assert ImageStore(cache).reader().targets == list(collect(plain)[1])
    training = load_dataset(records, image_size=32, batch_size=18, training=True, seed=3,
                            augment=False, cache=str(cache))
    first, second = collect(training)[0], collect(training)[0]
    assert not np.array_equal(first, second)  # a new order each epoch
    order = np.lexsort(first.reshape(len(first), -1).T)
    again = np.lexsort(second.reshape(len(second), -1).T)
    np.testing.assert_array_equal(first[order], second[again])  # the same images


def test_the_row_store_is_rewritten_for_other_records_and_keeps_what_it_skipped(records,
                                                                                tmp_path):
    from mammo_keras.data.image_store import ImageStore

    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a dicom")
    bad = dataclasses.replace(records[0], path=str(broken))
    cache = str(tmp_path / "store")
    collect(load_dataset([*records[:6], bad], image_size=32, batch_size=4, cache=cache,
                         report=DataReport()))
    report = DataReport()  # a later process: the store is read, the skipped file still told
    images, _ = collect(load_dataset([*records[:6], bad], image_size=32, batch_size=4,
                                     cache=cache, report=report))
    assert len(images) == 6 and [error.path for error in report.skipped] == [str(broken)]
    others = collect(load_dataset(records[6:10], image_size=32, batch_size=4, cache=cache))[0]
    assert len(others) == 4 and ImageStore(cache).index()["paths"] == \
        [record.path for record in records[6:10]]
    np.testing.assert_array_equal(others, collect(load_dataset(records[6:10], image_size=32,
                                                               batch_size=4))[0])


def test_the_row_store_is_not_read_for_a_file_rewritten_under_its_name(records, tmp_path):
    """The same paths with new pixels (data replaced between runs): the store is refilled."""
    import shutil

    copies = []
    for index, record in enumerate(records[:4]):
        target = tmp_path / f"film{index}{Path(record.path).suffix}"
        shutil.copy(record.path, target)
        copies.append(dataclasses.replace(record, path=str(target)))
    cache = str(tmp_path / "store")
    before = collect(load_dataset(copies, image_size=32, batch_size=4, cache=cache))[0]
    shutil.copy(records[5].path, copies[0].path)  # another film under the first one's name
    after = collect(load_dataset(copies, image_size=32, batch_size=4, cache=cache))[0]
    fresh = collect(load_dataset(copies, image_size=32, batch_size=4))[0]
    np.testing.assert_array_equal(after, fresh)
    assert not np.array_equal(after[0], before[0])
