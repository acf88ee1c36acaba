"""SavedModel export in TF Serving's layout, with the training preprocessing inside the graph.

    OUT/savedmodel/<version>/          saved_model.pb, variables/   (TF Serving: model_base_path
                                       = OUT/savedmodel)
        assets/mammo_keras.json        the metadata, inside the artefact (class names,
                                       preprocessing, task, provenance, parity)
    OUT/savedmodel/<version>.json      the same metadata, beside it

Signatures (all return "probabilities" (N, K) float32, "prediction" (N,) string and
"class_names" (K,) string):

- `serving_default`: "images" (N, H, W) float32 in [0, 1], raw full mammograms of one
  size per batch (as `read_image` returns them); cropped, flipped, resized
  (and windowed / equalised when the model was trained so) in the graph.
- `serve_png`: "png" (N,) string, encoded 8- or 16-bit grayscale PNG files of any size.
- `serve_preprocessed`: "images" (N, S, S, 1) float32, already preprocessed.

It loads with `tf.saved_model.load` alone: no mammo_keras or Keras needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf

from mammo_keras.atomic import write_json_atomically
from mammo_keras.data.preprocessing import preprocess, preprocessing_options
from mammo_keras.export.metadata import METADATA_NAME
from mammo_keras.export.publish import check_belongs, content_digest

METADATA_ASSET = f"assets/{METADATA_NAME}.json"


def _outputs(probabilities: tf.Tensor, class_names: list[str]) -> dict:
    names = tf.constant(class_names)
    return {"probabilities": tf.cast(probabilities, tf.float32),
            "prediction": tf.gather(names, tf.argmax(probabilities, axis=-1)),
            "class_names": names}


def decode_png_unit(data: tf.Tensor) -> tf.Tensor:
    """Encoded PNG bytes -> (H, W) float32 in [0, 1]; 8-bit and 16-bit files alike.

    16-bit files are scaled by the bit depth of their values, the reader's rule
    (`mammo_keras.data.readers.container_bits` without a declared depth): the smallest of
    8, 10, 12, 14 and 16 bits that holds the maximum, so a 12-bit image in a 16-bit PNG
    reaches 1.0. 8-bit files decode as multiples of 257 and keep their 8-bit scale.
    """
    image = tf.io.decode_png(data, channels=1, dtype=tf.uint16)[..., 0]
    values = tf.cast(image, tf.int32)
    eight_bit = tf.reduce_all(tf.equal(values % 257, 0))
    maximum = tf.reduce_max(values)
    depths = tf.constant([8, 10, 12, 14, 16])
    bits = tf.gather(depths, tf.argmax(tf.cast(maximum < 2 ** depths, tf.int32)))
    scale = tf.where(eight_bit, 65535.0, tf.cast(2 ** bits - 1, tf.float32))
    return tf.minimum(tf.cast(image, tf.float32) / scale, 1.0)


def export_savedmodel(model: keras.Model, folder: str | Path, class_names: list[str],
                      preprocessing: dict) -> Path:
    """Write `model` as a SavedModel into `folder` (a new path; `export_model` builds it in
    a staging folder and publishes it as OUT/savedmodel/<version>/ once checked)."""
    size = int(model.input_shape[1])
    options = preprocessing_options(preprocessing)

    def prepare(image: tf.Tensor) -> tf.Tensor:
        return preprocess(image, size, **options)[0]

    def classify(images: tf.Tensor) -> dict:
        return _outputs(model(images, training=False), class_names)

    def serve_raw(images: tf.Tensor) -> dict:
        batch = tf.map_fn(prepare, images, fn_output_signature=tf.TensorSpec(
            (size, size, 1), tf.float32))
        return classify(batch)

    def serve_png(png: tf.Tensor) -> dict:
        batch = tf.map_fn(lambda data: prepare(decode_png_unit(data)), png,
                          fn_output_signature=tf.TensorSpec((size, size, 1), tf.float32))
        return classify(batch)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve_raw, input_signature=[
        tf.TensorSpec((None, None, None), tf.float32, name="images")])
    archive.add_endpoint("serve_png", serve_png, input_signature=[
        tf.TensorSpec((None,), tf.string, name="png")])
    archive.add_endpoint("serve_preprocessed", classify, input_signature=[
        tf.TensorSpec((None, size, size, 1), tf.float32, name="images")])
    archive.write_out(str(folder), verbose=False)
    return Path(folder)


def write_savedmodel_metadata(version_folder: str | Path, metadata: dict) -> Path:
    """Store `metadata` inside a SavedModel version folder (`assets/mammo_keras.json`).

    A file under assets/ travels with the SavedModel (TF Serving and `gsutil cp -r`
    copy the folder whole) and does not change its graph. It records "content_sha256",
    the hash of every other file of the folder, so that it cannot describe other weights.
    """
    digest = content_digest(version_folder, exclude=(METADATA_ASSET,))
    return write_json_atomically(Path(version_folder) / METADATA_ASSET,
                                 {**metadata, "content_sha256": digest})


def read_savedmodel_metadata(version_folder: str | Path) -> dict | None:
    """The metadata stored by `write_savedmodel_metadata`, or None when there is none.

    Raises:
        UserError: it records a content hash that the folder's files do not have.
    """
    path = Path(version_folder) / METADATA_ASSET
    if not path.is_file():
        return None
    return check_belongs(version_folder, json.loads(path.read_text()), str(path),
                         key="content_sha256", exclude=(METADATA_ASSET,))
