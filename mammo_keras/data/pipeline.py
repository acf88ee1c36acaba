"""`load_dataset`: records -> a batched `tf.data.Dataset` for training, evaluation or prediction.

    records -> parallel decode (read_image, in Python threads) -> preprocess (TF ops, the
    function export uses too) -> cache (on disk: an `ImageStore` read by row) -> shuffle (row
    numbers, not images) -> [class-balanced sampling] -> batch -> [Keras augmentation,
    training only] -> prefetch

Files that cannot be read, and images in which the breast crop finds no breast (under
`MIN_BREAST_FRACTION` of the image), are skipped, each with a warning and an entry in the
`DataReport` passed in; nothing is dropped silently. With `crop=False` (lesion patches, whose
field is tissue edge to edge) there is no breast to find, and no image is refused for it.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from mammo_keras.errors import UserError
from mammo_keras.data.errors import DataError
from mammo_keras.data.image_store import ImageStore
from mammo_keras.data.preprocessing import MIN_BREAST_FRACTION
from mammo_keras.data.preprocessor import MammogramPreprocessor
from mammo_keras.data.readers import read_image
from mammo_keras.data.records import Record
from mammo_keras.data.targets import TargetSpec

_UNSET = object()
# load_dataset's `task` argument before targets were specs: its values and the spec of each
_DEPRECATED_TASK_TARGETS = {"malignancy": TargetSpec("label"), "density": TargetSpec("density"),
                            "segmentation": TargetSpec(None, masks=True), None: TargetSpec(None)}


@dataclasses.dataclass
class DataReport:
    """What a pipeline skipped while it ran: `skipped` is a list of DataError (one per bad file).

    `announce`: also warn (`warnings.warn`) as each file is skipped, for a pipeline whose
    caller holds no report to list them; a caller that lists them itself leaves it off, so
    each skipped file is told once.
    """

    skipped: list = dataclasses.field(default_factory=list)
    announce: bool = False
    shapes: dict = dataclasses.field(default_factory=dict)  # path -> (H, W) as read
    views: dict = dataclasses.field(default_factory=dict)  # path -> "CC" / "MLO" as read
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def kept(self, records: Sequence[Record]) -> list[Record]:
        """The records the pipeline yielded, in order (call after iterating the dataset)."""
        skipped = {error.path for error in self.skipped}
        return [record for record in records if record.path not in skipped]

    def shape_summary(self, records: Sequence[Record]) -> dict | None:
        """{"median": [H, W], "smallest": [H, W], "largest": [H, W], "images": n} of the
        original (decoded) sizes of `records` the pipeline read; None if it read none."""
        shapes = np.asarray([self.shapes[record.path] for record in records
                             if record.path in self.shapes], np.int64).reshape(-1, 2)
        if not len(shapes):
            return None
        by_area = shapes[np.argsort(shapes[:, 0] * shapes[:, 1], kind="stable")]
        return {"median": [int(v) for v in np.median(shapes, axis=0)],
                "smallest": [int(v) for v in by_area[0]],
                "largest": [int(v) for v in by_area[-1]], "images": int(len(shapes))}

    def add(self, error: DataError) -> None:
        with self._lock:
            if all(str(error) != str(seen) for seen in self.skipped):
                self.skipped.append(error)
                if self.announce:
                    warnings.warn(f"skipped {error}", stacklevel=2)


def as_target_spec(target: TargetSpec | str | None, class_names: Sequence[str] | None = None,
                   named: Sequence[str] | None = None) -> TargetSpec:
    """A `TargetSpec` from what `load_dataset` accepts: a spec, a record field name, or None
    (no class: prediction); `class_names` and `named` fill the spec where given."""
    spec = target if isinstance(target, TargetSpec) else TargetSpec(field=target)
    changes = {}
    if class_names:
        changes["class_names"] = tuple(class_names)
    if named is not None:
        changes["named"] = tuple(named)
    return dataclasses.replace(spec, **changes) if changes else spec


def augmentation_layers(seed: int = 0) -> list[keras.layers.Layer]:
    """Training augmentation (our choice): vertical flip, +-5 degree rotation, +-10 % zoom.

    No horizontal flip: preprocessing puts the chest wall on the left on purpose.
    """
    return [keras.layers.RandomFlip("vertical", seed=seed),
            keras.layers.RandomRotation(5 / 360, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 2)]


def load_dataset(
    records: Sequence[Record],
    target: TargetSpec | str | None = "label",
    image_size: int = 224,
    batch_size: int = 16,
    *,
    training: bool = False,
    class_names: Sequence[str] | None = None,
    shuffle: bool | None = None,
    balanced: bool = False,
    augment: bool | None = None,
    cache: bool | str | None = None,
    crop: bool = True,
    flip: bool = True,
    window: bool = False,
    equalize: bool = False,
    seed: int = 0,
    deterministic: bool = False,
    report: DataReport | None = None,
    targets: Sequence[str] | None = None,
    train_crop: Sequence[int] | None = None,
    crop_positive_rate: float = 0.5,
    preprocessor: MammogramPreprocessor | None = None,
    task=_UNSET,
) -> tf.data.Dataset:
    """A batched dataset of (image, target) pairs.

    Args:
        records: from `load_records` (or a split of them).
        target: what each record yields (`TargetSpec`, built by a task's `target_spec`):
            a record field name ("label", "density", a dataset's own field) for its class
            index, a `TargetSpec` (class field, ordered classes, masks, named targets), or
            None for prediction (every record is used; the target is 0).
        image_size: side S of the square model input.
        batch_size: images per batch.
        training: shuffles and augments by default, and makes `balanced` possible.
        class_names: the classes in index order (overrides the spec's); default
            `default_class_names`: normal / benign / malignant for "label", the densities
            (BI-RADS A-D, or the dataset's own such as MIAS F/G/D), else the records' values.
        shuffle, augment: override the `training` defaults.
        balanced: draw classes equally often (training only): the dataset then
            repeats forever, so pass `steps_per_epoch` to `fit`.
        cache: True (memory), a file path (on disk: an `ImageStore` read back by row, so
            shuffling moves row numbers and memory stays flat in the number of images; a
            store of other records or another size is rewritten), or False; caches
            preprocessed, un-augmented images, so later epochs skip decoding. None (default):
            in memory when `training`, else nothing, so one pass over a cohort
            (prediction, evaluation) keeps memory flat in the number of files.
        crop, flip, window, equalize: passed to `preprocess` (equalize = CLAHE).
        preprocessor: a model's `MammogramPreprocessor` (`description.preprocessor()`), in
            place of `image_size` and the four options above.
        seed: seeds shuffling and augmentation.
        deterministic: same order and augmentation on every run (slower).
        report: collects the files skipped because they could not be read (without one,
            each is announced with `warnings.warn`).
        targets: for models with several outputs: the target names (the spec's `named`), a
            subset of ("label", "mask"); the targets are then a dict {"label": (B,) int32
            class index, "mask": (B, S, S, 1) float32 lesion mask} and the mask follows the
            crop, flip and augmentation of the image.
        task: deprecated (warns): "malignancy", "density", "segmentation" or None, the
            targets' names before `target`.
        train_crop: (h, w): train on crops of this size of the (S, S) preprocessed image
            instead of the whole image (the HDS authors' "balanced" crops): with probability
            `crop_positive_rate` a crop centred on a random lesion pixel (when the image has
            one), else one at a uniformly random place; the "label" target becomes "lesion in
            the crop" (1 / 0). Needs the mask among `targets`.

    Returns:
        `tf.data.Dataset` of (images (B, S, S, 1) float32 in [0, 1], targets (B,) int32
        or masks (B, S, S, 1) float32, or the dict of `targets`).

    Records without a class in `class_names` (their field None or another value) are
    skipped and reported at once (they are known before reading any file).
    """
    if task is not _UNSET:
        if task not in _DEPRECATED_TASK_TARGETS:
            raise ValueError(f"load_dataset(task={task!r}): pass target= a record field, a "
                             "TargetSpec (a task's target_spec) or None")
        warnings.warn("load_dataset(task=...) is deprecated: pass target= a record field "
                      "('label', 'density'), a TargetSpec (a task's target_spec) or None",
                      DeprecationWarning, stacklevel=2)
        target = _DEPRECATED_TASK_TARGETS[task]
    if cache is None:
        cache = training
    if preprocessor is None:
        preprocessor = MammogramPreprocessor(image_size, crop=crop, flip=flip, window=window,
                                             equalize=equalize)
    image_size, crop = preprocessor.image_size, preprocessor.options["crop"]
    spec = as_target_spec(target, class_names, targets)
    spec.check_field(records)
    spec = spec.resolved(records)
    targets = spec.named
    report = report if report is not None else DataReport(announce=True)
    usable, labels = [], []
    for record in records:
        index = spec.class_index(record) if spec.field is not None else 0
        if index is None:
            report.add(DataError(record.path, f"no {spec.field} among {list(spec.class_names)}"
                                              f" (got {spec.value(record)!r})"))
        else:
            usable.append(record)
            labels.append(index)
    if not usable:
        raise UserError(f"No records with a {spec.field} among {list(spec.class_names)}."
                        if spec.field is not None else "No records to load.")
    shuffle = training if shuffle is None else shuffle
    augment = training if augment is None else augment
    segmentation = spec.masks

    def decode(index):
        record = usable[int(index)]
        try:
            image, meta = read_image(record.path)
            mask = record.mask(image.shape).astype(np.uint8) if segmentation else \
                np.zeros((1, 1), np.uint8)
            if segmentation and mask.shape != image.shape:
                raise DataError(record.path, f"mask shape {mask.shape} differs from image "
                                             f"{image.shape}")
            # the record's laterality wins over the file's tags and name
            side = record.laterality or meta.get("laterality") or ""
            report.shapes[record.path] = tuple(int(n) for n in image.shape[:2])
            report.views[record.path] = record.view or meta.get("view")
            return image, mask, True, np.bytes_(side)
        except Exception as error:  # escaping into tf.data, it can hang the process: skip the file
            report.add(error if isinstance(error, DataError) else DataError(
                record.path, f"cannot be read ({type(error).__name__}: {error})"))
            return np.zeros((1, 1), np.float32), np.zeros((1, 1), np.uint8), False, \
                np.bytes_("")

    def load(index, target):
        image, mask, ok, side = tf.numpy_function(
            decode, [index], [tf.float32, tf.uint8, tf.bool, tf.string], stateful=False)
        image.set_shape([None, None])
        mask.set_shape([None, None])
        side.set_shape([])
        return image, mask, ok, side, target, index

    def prepare(image, mask, ok, side, target, index):
        processed, geometry, breast = preprocessor.with_breast(image, side)
        mask_target = preprocessor.mask(mask, geometry) if segmentation else \
            tf.zeros([1, 1, 1], tf.uint8)
        return (processed, mask_target, target, index), breast, index

    def to_example(image, mask, target):
        """(image, target): the class index, the mask, or the dict of named targets."""
        mask = tf.cast(mask, tf.float32) if segmentation else None
        if targets is not None:
            named = {"label": target, "mask": mask}
            return image, {name: named[name] for name in targets}
        return image, mask if segmentation and not spec.has_class else target

    def keep_or_report(breast, index):
        if breast >= MIN_BREAST_FRACTION:
            return np.bool_(True)
        report.add(DataError(usable[int(index)].path, f"no breast found ({breast:.1%} of the "
                                                      "image is tissue): not a mammogram"))
        return np.bool_(False)

    def has_breast(example, breast, index):
        keep = tf.numpy_function(keep_or_report, [breast, index], tf.bool, stateful=True)
        return tf.reshape(keep, [])

    def decoded(order_shuffled: bool) -> tf.data.Dataset:
        """(image (S, S, 1), mask (S, S, 1) uint8, target, index) of every usable record."""
        indices = tf.data.Dataset.from_tensor_slices(
            (np.arange(len(usable), dtype=np.int64), np.asarray(labels, np.int32)))
        if order_shuffled:
            indices = indices.shuffle(len(usable), seed=seed, reshuffle_each_iteration=True)
        dataset = indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.filter(lambda image, mask, ok, side, target, index: ok)
        dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if crop:  # without the crop the image is a region already (a patch): all of it tissue
            dataset = dataset.filter(has_breast)
        return dataset.map(lambda example, breast, index: example)

    if cache and cache is not True:  # on disk: read back by row, so shuffling holds no images
        dataset = _stored(decoded(False), ImageStore(cache), usable, labels, preprocessor,
                          segmentation, report, shuffle, seed)
    else:
        dataset = decoded(shuffle and not cache)  # uncached: shuffle the file order early
        if cache:  # in memory, by the caller's choice: the set is held once, so shuffle it
            dataset = dataset.cache()
            if shuffle:
                dataset = dataset.shuffle(len(usable), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda image, mask, target, index: to_example(image, mask, target))
    if train_crop is not None:
        if "mask" not in (targets or ()) or not (0 < train_crop[0] <= image_size
                                                  and 0 < train_crop[1] <= image_size):
            raise ValueError(f"train_crop {tuple(train_crop)} needs a mask target and must fit "
                             f"in the {image_size} x {image_size} image")
    if balanced:
        if not training or not spec.has_class:
            raise ValueError("balanced sampling is for training a classifier (training=True).")

        def label_of(target):
            return target["label"] if isinstance(target, dict) else target

        per_class = [dataset.filter(lambda image, target, k=k: tf.equal(label_of(target), k))
                     .repeat() for k in sorted(set(labels))]
        dataset = tf.data.Dataset.sample_from_datasets(per_class, seed=seed,
                                                       stop_on_empty_dataset=False)
    if train_crop is not None:
        dataset = dataset.enumerate().map(
            lambda index, example: _lesion_crop(example, index, tuple(train_crop),
                                                crop_positive_rate, seed),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        # Random layers keep state: in deterministic mode they draw in one order, sequentially.
        dataset = dataset.map(_augmenter(seed),
                              num_parallel_calls=None if deterministic else tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic or not training
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _stored(decoded: tf.data.Dataset, store: ImageStore, usable: Sequence[Record],
            labels: Sequence[int], preprocessor: MammogramPreprocessor, masks: bool,
            report: DataReport, shuffle: bool, seed: int) -> tf.data.Dataset:
    """(image, mask, target, index) read from `store`, filled first from `decoded` unless it
    holds these records already; shuffled by row number when `shuffle`."""
    paths, size = [record.path for record in usable], preprocessor.image_size
    known = set(paths)
    if not store.holds(paths, preprocessor.get_config(), masks):
        store.write(((image.numpy(), mask.numpy() if masks else None, int(target), int(index))
                     for image, mask, target, index in decoded), paths,
                    preprocessor.get_config(), masks,
                    lambda: [error for error in report.skipped if error.path in known])
    reader = store.reader()
    for error in reader.skipped:  # files a pass of an earlier process could not use
        report.add(error)
    positions = np.asarray(reader.positions, np.int64)
    rows = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(positions), dtype=np.int64), np.asarray(labels, np.int32)[positions]
         if len(positions) else np.zeros(0, np.int32), positions))
    if shuffle:
        rows = rows.shuffle(max(len(positions), 1), seed=seed, reshuffle_each_iteration=True)

    def read_row(row):
        image, mask = reader.row(int(row))
        return image, mask if mask is not None else np.zeros((1, 1, 1), np.uint8)

    def load_row(row, target, index):
        image, mask = tf.numpy_function(read_row, [row], [tf.float32, tf.uint8], stateful=False)
        image.set_shape([size, size, 1])
        mask.set_shape([size, size, 1] if masks else [1, 1, 1])
        return image, mask, target, index

    return rows.map(load_row, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _lesion_crop(example, index, size: tuple[int, int], positive_rate: float, seed: int):
    """An (h, w) crop of one (image, {"mask", ["label"]}) example: centred on a random lesion
    pixel with probability `positive_rate` when the mask has one, else at a random place;
    the label becomes whether the crop holds lesion pixels. Random numbers are stateless,
    drawn from (seed, the example's position), so a run repeats exactly."""
    image, targets = example
    mask = targets["mask"]
    height, width = size
    side = tf.shape(image)[:2]
    draws = tf.random.stateless_uniform([4], seed=tf.stack([tf.cast(seed, tf.int64), index]))
    lesion = tf.where(mask[..., 0] > 0.5)
    on_lesion = tf.logical_and(draws[0] < positive_rate, tf.size(lesion) > 0)

    def lesion_centre():
        pick = tf.cast(draws[1] * tf.cast(tf.shape(lesion)[0], tf.float32), tf.int64)
        return tf.cast(lesion[tf.minimum(pick, tf.cast(tf.shape(lesion)[0], tf.int64) - 1)],
                       tf.int32)

    def random_centre():
        return tf.cast(draws[2:] * tf.cast(side, tf.float32), tf.int32)

    centre = tf.cond(on_lesion, lesion_centre, random_centre)
    top = tf.clip_by_value(centre[0] - height // 2, 0, side[0] - height)
    left = tf.clip_by_value(centre[1] - width // 2, 0, side[1] - width)
    image = tf.image.crop_to_bounding_box(image, top, left, height, width)
    crop_mask = tf.image.crop_to_bounding_box(mask, top, left, height, width)
    cropped = {**targets, "mask": crop_mask}
    if "label" in targets:
        cropped["label"] = tf.cast(tf.reduce_any(crop_mask > 0.5), targets["label"].dtype)
    return image, cropped


def _augmenter(seed: int):
    """Batch augmentation; a mask target rides along as a second channel."""
    layers = augmentation_layers(seed)
    contrast = keras.layers.RandomContrast(0.1, value_range=(0.0, 1.0), seed=seed + 3)

    def geometric(images, mask=None):
        stacked = images if mask is None else tf.concat([images, mask], axis=-1)
        for layer in layers:
            stacked = layer(stacked, training=True)
        if mask is None:
            return stacked, None
        return stacked[..., :1], tf.cast(stacked[..., 1:] > 0.5, tf.float32)

    def apply(images, targets):
        if isinstance(targets, dict):
            images, mask = geometric(images, targets.get("mask"))
            targets = {**targets, **({"mask": mask} if mask is not None else {})}
        elif len(targets.shape) == 4:  # a segmentation mask
            images, targets = geometric(images, targets)
        else:
            images, _ = geometric(images)
        images = tf.clip_by_value(contrast(images, training=True), 0.0, 1.0)
        return images, targets

    return apply
