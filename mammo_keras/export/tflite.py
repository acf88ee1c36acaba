"""TFLite / LiteRT export: float32, dynamic-range, float16 or full-integer int8.

The .tflite model takes preprocessed images (N, S, S, 1) float32 in [0, 1] and returns
probabilities (N, K) float32 (int8 models quantise and dequantise at their edges, so
callers pass and receive floats either way); a model with mask outputs returns them too,
each (N, S, S, 1) under its name in the "serve" signature, beside "probabilities". Preprocessing stays outside: its
breast detection uses ops TFLite lacks; `mammo_keras.data.preprocess` or the
SavedModel's signatures do it.

The export metadata (class names, preprocessing, task) is stored inside the file as
a flatbuffer metadata entry named "mammo_keras" (the mechanism TFLite's own model
metadata uses), so a .tflite file copied alone still describes itself;
`read_tflite_metadata` reads it back without loading the model's tensors.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Iterable

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python.convert_phase import ConverterError  # not in tf.lite's API

from mammo_keras.errors import UserError
from mammo_keras.quiet_tensorflow import stderr_to_file
from mammo_keras.atomic import write_bytes_atomically
from mammo_keras.export import QUANTIZATIONS
from mammo_keras.export.metadata import METADATA_NAME


def tflite_bytes(model: keras.Model, quantize: str = "none",
                 representative: np.ndarray | None = None,
                 workdir: str | Path | None = None) -> bytes:
    """Convert `model`; int8 needs `representative` images (M, S, S, 1) float32.

    The converter reads an intermediate SavedModel, written in a temporary folder inside
    `workdir` (default: the system's temporary folder).
    """
    if quantize not in QUANTIZATIONS:
        raise UserError(f"Unknown quantization {quantize!r}; choose one of {list(QUANTIZATIONS)}.")
    if quantize == "int8" and (representative is None or len(representative) == 0):
        raise UserError("int8 quantization needs representative images (the training split "
                         "of the run, or --calibration-data).")
    size = int(model.input_shape[1])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda images: tf.nest.map_structure(
                             lambda output: tf.cast(output, tf.float32),
                             model(images, training=False)),
                         input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32,
                                                        name="images")])
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["serve"])
        _configure(converter, quantize, representative)
        try:
            with stderr_to_file():  # the converter prints its MLIR to stderr; the error says
                return converter.convert()
        except ConverterError as error:  # one line: the ops TFLite lacks, by name
            missing = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a "
                                            r"flex op", str(error))))
            raise UserError(f"model {model.name!r} cannot be converted to TFLite: "
                            + (f"TFLite has no {', '.join(missing)}" if missing else
                               str(error).strip().splitlines()[0])
                            + " (export --format savedmodel serves it)") from None


def _configure(converter, quantize: str, representative: np.ndarray | None) -> None:
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":

        def samples() -> Iterable[list[np.ndarray]]:
            for image in representative:
                yield [image[None].astype(np.float32)]

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def export_tflite(model: keras.Model, path: str | Path, quantize: str = "none",
                  representative: np.ndarray | None = None) -> Path:
    """Write the converted model to `path` (.tflite) atomically; the converter works in
    `path`'s folder."""
    content = tflite_bytes(model, quantize, representative, workdir=Path(path).parent)
    return write_bytes_atomically(path, content)


def with_metadata(content: bytes, metadata: dict, name: str = METADATA_NAME) -> bytes:
    """The TFLite flatbuffer `content` with `metadata` (JSON) as its metadata entry `name`
    (replacing an older entry of that name)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    flatbuffer = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    flatbuffer.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(flatbuffer.buffers) - 1
    flatbuffer.metadata = [item for item in (flatbuffer.metadata or [])
                           if item.name.decode() != name] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer))


def write_tflite_metadata(path: str | Path, metadata: dict) -> Path:
    """Store `metadata` inside the .tflite file at `path` (rewritten atomically)."""
    return write_bytes_atomically(path, with_metadata(Path(path).read_bytes(), metadata))


def read_tflite_metadata(path: str | Path, name: str = METADATA_NAME) -> dict | None:
    """The JSON metadata entry `name` of a .tflite file, or None when it has none."""
    from tensorflow.lite.python import schema_py_generated as schema

    content = Path(path).read_bytes()
    try:
        flatbuffer = schema.Model.GetRootAs(content, 0)
        for index in range(flatbuffer.MetadataLength()):
            entry = flatbuffer.Metadata(index)
            if entry.Name().decode() == name:
                buffer = flatbuffer.Buffers(entry.Buffer())
                if buffer.Offset() > 1:  # stored after the flatbuffer (models over 2 GB)
                    return json.loads(content[buffer.Offset():buffer.Offset() + buffer.Size()])
                return json.loads(buffer.DataAsNumpy().tobytes())
    except (IndexError, ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: unreadable TFLite metadata ({error})") from None
    return None


def _interpreter(path: Path, threads: int):
    """LiteRT's interpreter (`ai_edge_litert`) where it is installed; else TensorFlow's, whose
    deprecation warning ("scheduled for deletion") is kept off the user's terminal: the
    package names the replacement here, and both run the same flatbuffer."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is "
                                    "deprecated", category=UserWarning)
            return tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    return Interpreter(model_path=str(path), num_threads=threads)


class TFLiteRunner:
    """Runs a .tflite model on batches: (N, S, S, 1) float32 -> class probabilities (N, K)
    float32 (`__call__`), or every output by name (`outputs`).

    `num_threads`: the interpreter's CPU threads; None: every core of this machine.
    """

    def __init__(self, path: str | Path, num_threads: int | None = None):
        self.path = Path(path)
        threads = num_threads or os.cpu_count() or 1
        try:
            self.interpreter = _interpreter(self.path, threads)
        except ValueError as error:
            raise UserError(f"{self.path}: not a readable TFLite model ({error})") from None
        detail = self.interpreter.get_input_details()[0]
        self.input_index = detail["index"]
        self.image_size = int(detail["shape"][1])
        self.output_indices = self._named_outputs()
        self.num_classes = int(next(
            item["shape"][-1] for item in self.interpreter.get_output_details()
            if item["index"] == self.output_indices["probabilities"]))
        self._batch = None

    def _named_outputs(self) -> dict[str, int]:
        """{output name: tensor index}; a file with one unnamed output (written before
        outputs were named) has it as "probabilities"."""
        signatures = self.interpreter.get_signature_list()
        outputs = {}
        if "serve" in signatures:
            details = self.interpreter.get_signature_runner("serve").get_output_details()
            outputs = {name: int(item["index"]) for name, item in details.items()}
        if "probabilities" not in outputs:
            if len(outputs) > 1:
                raise UserError(f"{self.path}: outputs {sorted(outputs)} and none is named "
                                "'probabilities'")
            outputs = {"probabilities": int(self.interpreter.get_output_details()[0]["index"])}
        return outputs

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """{"probabilities": (N, K), <mask name>: (N, S, S, 1), ...} float32."""
        images = np.asarray(images, np.float32)
        if self._batch != len(images):
            self.interpreter.resize_tensor_input(self.input_index, list(images.shape))
            self.interpreter.allocate_tensors()
            self._batch = len(images)
        self.interpreter.set_tensor(self.input_index, images)
        self.interpreter.invoke()
        return {name: np.array(self.interpreter.get_tensor(index))
                for name, index in self.output_indices.items()}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.outputs(images)["probabilities"]
