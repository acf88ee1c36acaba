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

The raw signatures (`serving_default`, `serve_png`) also return "status" (N,) string: "ok",
or what the readers would have refused (smaller than 16 px, values not finite or outside
[0, 1] such as raw 12-bit values, a blank image, no breast found); such a row's
probabilities (and masks) are NaN and its prediction empty: no answer rather than a guess.

A model whose description names mask outputs (`mammo_keras.models.outputs`) also returns
each mask under its output's name, float32 probabilities in [0, 1]: (N, H, W) on the raw
images for `serving_default` (mapped back through the crop, resize and flip; 0 outside
the crop), (N, S, S) on the model's grid for the other two, with "geometry" (N, 5)
[flipped, top, left, height, width] of each crop (`mammo_keras.data.invert_geometry`
maps a mask back).

It loads with `tf.saved_model.load` alone: no mammo_keras or Keras needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf

from mammo_keras.atomic import write_json_atomically
from mammo_keras.data.preprocessing import preprocessing_options
from mammo_keras.data.preprocessor import STATUS_OK, MammogramPreprocessor
from mammo_keras.export.metadata import METADATA_NAME
from mammo_keras.export.publish import check_belongs, content_digest
from mammo_keras.models.outputs import split_outputs

METADATA_ASSET = f"assets/{METADATA_NAME}.json"


def _outputs(served, class_names: list[str]) -> dict:
    """The signature outputs of what a `served_model` returns (a tensor or a dict)."""
    probabilities, masks = split_outputs(served)
    names = tf.constant(class_names)
    return {"probabilities": tf.cast(probabilities, tf.float32),
            "prediction": tf.gather(names, tf.argmax(probabilities, axis=-1)),
            "class_names": names,
            **{name: tf.cast(mask[..., 0], tf.float32) for name, mask in masks.items()}}


def refused_answers(outputs: dict, status: tf.Tensor) -> dict:
    """`outputs` with "status" (N,) added and, where it is not "ok", NaN probabilities (and
    masks) and an empty prediction: no answer rather than a guess."""
    accepted = tf.equal(status, STATUS_OK)  # the preprocessor's own word for a usable film
    refused = {"status": status}
    for name, value in outputs.items():
        if name in ("class_names", "geometry"):
            refused[name] = value
        elif name == "prediction":
            refused[name] = tf.where(accepted, value, "")
        else:
            keep = tf.reshape(accepted, [-1] + [1] * (len(value.shape) - 1))
            refused[name] = tf.where(keep, value, tf.constant(float("nan"), value.dtype))
    return refused


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
    """Write `model` (a `served_model`: class probabilities, and masks when it has them) as a
    SavedModel into `folder` (a new path; `export_model` builds it in a staging folder and
    publishes it as OUT/savedmodel/<version>/ once checked)."""
    size = int(model.input_shape[1])
    preprocessor = MammogramPreprocessor(size, **preprocessing_options(preprocessing))
    has_masks = isinstance(model.output, dict)
    prepared_spec = (tf.TensorSpec((size, size, 1), tf.float32), tf.TensorSpec((5,), tf.float32))

    checked_spec = (*prepared_spec, tf.TensorSpec((), tf.string))

    def prepare(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return preprocessor.with_status(image)

    def classify(images: tf.Tensor) -> dict:
        return _outputs(model(images, training=False), class_names)

    def classify_checked(batch: tf.Tensor, geometry: tf.Tensor, status: tf.Tensor) -> dict:
        return refused_answers({**classify(batch), **({"geometry": geometry} if has_masks
                                                      else {})}, status)

    def serve_raw(images: tf.Tensor) -> dict:
        batch, geometry, status = tf.map_fn(prepare, images, fn_output_signature=checked_spec)
        outputs = classify_checked(batch, geometry, status)
        shape = tf.shape(images)[1:3]
        for name in outputs.keys() - {"probabilities", "prediction", "class_names", "geometry",
                                      "status"}:
            outputs[name] = tf.map_fn(
                lambda pair: preprocessor.invert(pair[0], pair[1], shape)[..., 0],
                (outputs[name], geometry), fn_output_signature=tf.float32)
        return outputs

    def serve_png(png: tf.Tensor) -> dict:
        batch, geometry, status = tf.map_fn(lambda data: prepare(decode_png_unit(data)), png,
                                            fn_output_signature=checked_spec)
        return classify_checked(batch, geometry, status)

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
