"""Intensity scaling by the real bit depth of 16-bit files, in the reader and in the serving
graph, and laterality / view from file names, used by the flip."""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mammo_keras.data import read_image
from mammo_keras.devtools.crop_testset import crop_test_cases, write_case
from mammo_keras.data.naming import laterality_and_view_from_name
from mammo_keras.data.pipeline import load_dataset
from mammo_keras.data.preprocessing import preprocess
from mammo_keras.data.readers import container_bits
from mammo_keras.data.records import Record
from mammo_keras.export.savedmodel import decode_png_unit


def png16(values: np.ndarray, significant_bits: int | None = None) -> bytes:
    """A 16-bit grayscale PNG, with an sBIT chunk after IHDR when asked."""
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, format="PNG")
    data = buffer.getvalue()
    if significant_bits is None:
        return data
    body = b"sBIT" + bytes([significant_bits])
    chunk = struct.pack(">I", 1) + body + struct.pack(">I", zlib.crc32(body))
    end_of_ihdr = 8 + 8 + 13 + 4
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


@pytest.fixture
def ramp(rng):
    return rng.integers(0, 4096, size=(40, 30))


def test_twelve_bit_values_in_a_sixteen_bit_png_reach_full_range(tmp_path, ramp):
    ramp[0, 0] = 4095
    path = tmp_path / "scan.png"
    path.write_bytes(png16(ramp))
    image, meta = read_image(path)
    np.testing.assert_allclose(image, ramp / 4095, atol=1e-6)
    assert (meta["bits_stored"], meta["bits_rule"]) == (12, "maximum")


def test_declared_depth_wins_when_the_values_fit_it(tmp_path, ramp):
    path = tmp_path / "declared.png"
    path.write_bytes(png16(ramp, significant_bits=14))
    image, meta = read_image(path)
    np.testing.assert_allclose(image, ramp / 16383, atol=1e-6)
    assert (meta["bits_stored"], meta["bits_rule"]) == (14, "declared")
    # sBIT 12 on values scaled up to 16 bits, as the PNG specification asks: read as 16-bit
    scaled = tmp_path / "scaled.png"
    scaled.write_bytes(png16(ramp * 16, significant_bits=12))
    image, meta = read_image(scaled)
    np.testing.assert_allclose(image, ramp * 16 / 65535, atol=1e-6)
    assert meta["bits_stored"] == 16


def test_tiff_max_sample_value_is_the_declared_depth(tmp_path, ramp):
    path = tmp_path / "scan.tif"
    Image.fromarray((ramp // 4).astype(np.uint16)).save(path, tiffinfo={281: 1023})
    image, meta = read_image(path)
    np.testing.assert_allclose(image, (ramp // 4) / 1023, atol=1e-6)
    assert (meta["bits_stored"], meta["bits_rule"]) == (10, "declared")


@pytest.mark.parametrize("maximum, bits", [(255, 8), (256, 10), (1023, 10), (4095, 12),
                                           (4096, 14), (65535, 16)])
def test_container_bits_rule(maximum, bits):
    assert container_bits(np.array([0, maximum])) == (bits, "maximum")


@pytest.mark.parametrize("kind", ["8-bit", "12-in-16", "16-bit"])
def test_serving_graph_decodes_pngs_as_the_reader_does(tmp_path, rng, kind):
    if kind == "8-bit":
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (20, 24)).astype(np.uint8)).save(buffer, "PNG")
        data = buffer.getvalue()
    else:
        top = 4095 if kind == "12-in-16" else 65535
        values = rng.integers(0, top + 1, (20, 24))
        values[0, 0] = top
        data = png16(values)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    expected, _ = read_image(path)
    graph = tf.function(decode_png_unit, input_signature=[tf.TensorSpec([], tf.string)])
    np.testing.assert_allclose(graph(tf.constant(data)).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("name, expected", [
    ("0_L-CC.png", ("L", "CC")), ("3_R-MLO.png", ("R", "MLO")), ("1_L_CC.png", ("L", "CC")),
    ("0_R-MLO.png", ("R", "MLO")), ("Mass-Training_P_00001_LEFT_CC.dcm", ("L", "CC")),
    ("Calc-Test_P_00038_RIGHT_MLO_1.dcm", ("R", "MLO")),
    ("22678622_61b13c59bcba149e_MG_R_ML_ANON.dcm", ("R", "MLO")),
    ("case0001.LEFT_CC.LJPEG", ("L", "CC")), ("patient_RMLO.png", ("R", "MLO")),
    ("case4.LCC", ("L", "CC")), ("all-mias.tar.gz::mdb001.pgm", (None, None)),
    ("L_R_CC.png", (None, "CC")),  # contradicting sides: unknown
    ("RIGHT/mdb002.pgm", (None, None)),  # folders do not count
    ("CCTV_Lateral.png", (None, None))])
def test_laterality_and_view_from_names(name, expected):
    assert laterality_and_view_from_name(name) == expected


def test_file_name_laterality_reaches_the_reader_and_tags_win(tmp_path):
    case = crop_test_cases(size=256, kinds=("film",))[0]  # "0_L_CC", 8-bit PNG
    _, meta = read_image(write_case(case, tmp_path))
    assert (meta["laterality"], meta["view"], meta["laterality_source"]) == \
        ("L", "CC", "file name")
    from mammo_keras.data.dicom_writer import write_dicom

    path = write_dicom(tmp_path / "9_L_CC.dcm", case.image, laterality="R", view="MLO")
    _, meta = read_image(path)
    assert (meta["laterality"], meta["view"]) == ("R", "MLO")


def test_pipeline_flips_by_the_file_name_and_the_record_wins(tmp_path):
    """The same right breast saved under an 'L' name is not flipped; a record that says R
    flips it back."""
    case = crop_test_cases(size=256, kinds=("film",))[1]
    assert case.laterality == "R"
    path = tmp_path / "7_L_CC.png"
    Image.fromarray(np.round(case.image * 255).astype(np.uint8)).save(path)

    def first_image(laterality):
        record = Record(path=str(path), label="normal", density=None, patient_id="p",
                        laterality=laterality, view=None, source="test")
        images, _ = next(iter(load_dataset([record], image_size=64, batch_size=1,
                                           training=False)))
        return images.numpy()[0, ..., 0]

    image, _ = read_image(path)
    as_left = preprocess(image, 64, laterality="L")[0].numpy()[..., 0]
    as_right = preprocess(image, 64, laterality="R")[0].numpy()[..., 0]
    assert np.abs(as_left - as_right).max() > 0.3  # the flip matters for this image
    np.testing.assert_allclose(first_image(None), as_left, atol=1e-6)  # by the name
    np.testing.assert_allclose(first_image("R"), as_right, atol=1e-6)  # the record wins
