"""read_image on every supported format, DICOM variants, and each bad-input case."""

import io
import re
import tarfile

import numpy as np
import pydicom
import pytest
from PIL import Image

from mammo_keras.data import DataError, read_image
from mammo_keras.data.archive import member_path
from mammo_keras.data.dicom_writer import write_dicom

STEP_12_BIT = 0.5 / 4095 + 1e-6


@pytest.fixture
def image(rng) -> np.ndarray:
    """A smooth ramp plus noise, float in [0, 1]."""
    ramp = np.linspace(0, 1, 48)[None, :] * np.linspace(0.2, 1, 64)[:, None]
    return np.clip(ramp + rng.normal(0, 0.05, ramp.shape), 0, 1).astype("float32")


def write_pgm(path, pixels: np.ndarray) -> None:
    """PGM P5 written by hand (big-endian for 16-bit, as the format says)."""
    maximum = 255 if pixels.dtype == np.uint8 else 65535
    header = f"P5\n# written by the test\n{pixels.shape[1]} {pixels.shape[0]}\n{maximum}\n"
    body = pixels.astype(">u2").tobytes() if maximum == 65535 else pixels.tobytes()
    path.write_bytes(header.encode() + body)


def test_pgm_8_and_16_bit(tmp_path, image):
    pixels8 = np.round(image * 255).astype(np.uint8)
    write_pgm(tmp_path / "a.pgm", pixels8)
    out, meta = read_image(tmp_path / "a.pgm")
    np.testing.assert_allclose(out, pixels8 / 255.0, atol=1e-7)
    assert out.dtype == np.float32 and meta["format"] == "pgm" and meta["laterality"] is None
    assert meta["source_path"] == str(tmp_path / "a.pgm")
    pixels16 = np.round(image * 65535).astype(np.uint16)
    write_pgm(tmp_path / "b.pgm", pixels16)
    np.testing.assert_allclose(read_image(tmp_path / "b.pgm")[0], pixels16 / 65535.0, atol=1e-7)


def test_png_8_and_16_bit_tiff_and_jpeg(tmp_path, image):
    pixels8 = np.round(image * 255).astype(np.uint8)
    pixels16 = np.round(image * 65535).astype(np.uint16)
    Image.fromarray(pixels8).save(tmp_path / "a.png")
    Image.fromarray(pixels16).save(tmp_path / "b.png")
    Image.fromarray(pixels16).save(tmp_path / "c.tif")
    Image.fromarray(pixels8).save(tmp_path / "d.jpg", quality=95)
    np.testing.assert_allclose(read_image(tmp_path / "a.png")[0], pixels8 / 255.0, atol=1e-7)
    out16, meta16 = read_image(tmp_path / "b.png")
    np.testing.assert_allclose(out16, pixels16 / 65535.0, atol=1e-7)
    assert meta16["bits_stored"] == 16
    np.testing.assert_allclose(read_image(tmp_path / "c.tif")[0], pixels16 / 65535.0, atol=1e-7)
    jpeg, meta = read_image(tmp_path / "d.jpg")
    assert meta["format"] == "jpeg" and np.abs(jpeg - pixels8 / 255.0).mean() < 0.02


def test_colour_file_becomes_luminance(tmp_path, image):
    gray = np.round(image * 255).astype(np.uint8)
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "rgb.png")
    out, _ = read_image(tmp_path / "rgb.png")
    assert out.shape == gray.shape
    np.testing.assert_allclose(out, gray / 255.0, atol=1.5 / 255)


def test_format_is_recognised_by_content_not_name(tmp_path, image):
    pixels = np.round(image * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "mislabelled.jpg", format="PNG")
    write_dicom(tmp_path / "no_extension", image)
    assert read_image(tmp_path / "mislabelled.jpg")[1]["format"] == "png"
    assert read_image(tmp_path / "no_extension")[1]["format"] == "dicom"


@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpeg_ls", "jpeg2000"])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_transfer_syntaxes_and_photometric(tmp_path, image, syntax, photometric):
    path = write_dicom(tmp_path / "x.dcm", image, bits_stored=12, photometric=photometric,
                       transfer_syntax=syntax)
    stored = pydicom.dcmread(path).pixel_array
    if photometric == "MONOCHROME1":  # stored inverted: bright tissue has low stored values
        assert np.corrcoef(stored.ravel(), image.ravel())[0, 1] < -0.9
    out, meta = read_image(path)
    np.testing.assert_allclose(out, image, atol=STEP_12_BIT)
    assert meta["photometric"] == photometric and meta["bits_stored"] == 12


@pytest.mark.parametrize("bits", [8, 12, 14, 16])
def test_dicom_bit_depths(tmp_path, image, bits):
    out, _ = read_image(write_dicom(tmp_path / "x.dcm", image, bits_stored=bits))
    np.testing.assert_allclose(out, image, atol=0.5 / (2 ** bits - 1) + 1e-6)


def test_dicom_rescale_slope_intercept(tmp_path, image):
    path = write_dicom(tmp_path / "x.dcm", image, bits_stored=12, rescale=(2.0, -100.0))
    np.testing.assert_allclose(read_image(path)[0], image, atol=STEP_12_BIT)


def test_dicom_window_matches_the_dicom_linear_formula(tmp_path, image):
    center, width = 1500.0, 1000.0
    path = write_dicom(tmp_path / "x.dcm", image, bits_stored=12, window=(center, width))
    out, meta = read_image(path)
    stored = np.round(image * 4095)
    # DICOM PS3.3 C.11.2.1.2.1, LINEAR, output range [0, 4095] mapped onto [0, 1]
    expected = np.clip((stored - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    assert meta["voi_applied"]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert (out == 0).any() and (out == 1).any()  # the window clips both ends


def test_dicom_voi_lut_sequence(tmp_path, image):
    path = write_dicom(tmp_path / "x.dcm", image, bits_stored=12)
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    lut = (np.sqrt(np.arange(4096) / 4095) * 4095).round().astype(np.uint16)  # a gamma curve
    item.add_new((0x0028, 0x3002), "US", [4096, 0, 12])  # LUTDescriptor: entries, first, bits
    item.add_new((0x0028, 0x3006), "US", lut.tolist())  # LUTData
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    out, meta = read_image(path)
    assert meta["voi_applied"]
    np.testing.assert_allclose(out, lut[np.round(image * 4095).astype(int)] / 4095.0, atol=1e-6)


@pytest.mark.parametrize("where,expected", [
    ("tags", ("L", "MLO", "tags")),
    ("description", ("L", "MLO", "SeriesDescription")),
    ("none", (None, None, None)),
])
def test_dicom_laterality_and_view(tmp_path, image, where, expected):
    path = write_dicom(tmp_path / "x.dcm", image, laterality="L", view="MLO", laterality_in=where)
    meta = read_image(path)[1]
    assert (meta["laterality"], meta["view"], meta["laterality_source"]) == expected


def test_laterality_from_old_laterality_tag_and_view_code_sequence(tmp_path, image):
    path = write_dicom(tmp_path / "x.dcm", image, laterality="R", view="CC")
    ds = pydicom.dcmread(path)
    del ds.ImageLaterality, ds.ViewPosition
    ds.Laterality = "R"  # series-level tag of older modalities
    ds.save_as(path)
    meta = read_image(path)[1]
    assert (meta["laterality"], meta["view"]) == ("R", "CC")


def test_archive_member(tmp_path, image):
    pixels = np.round(image * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("inner/a.png")
        info.size = len(buffer.getvalue())
        tar.addfile(info, io.BytesIO(buffer.getvalue()))
    out, meta = read_image(member_path(archive, "inner/a.png"))
    np.testing.assert_allclose(out, pixels / 255.0, atol=1e-7)
    assert meta["source_path"] == f"{archive}::inner/a.png"
    with pytest.raises(DataError, match=r"images\.tar\.gz::inner/b\.png: no such member"):
        read_image(member_path(archive, "inner/b.png"))


def one_line_error(path) -> str:
    with pytest.raises(DataError) as error:
        read_image(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_bad_inputs_give_one_line_naming_the_file(tmp_path, image):
    assert "file not found" in one_line_error(tmp_path / "missing.dcm")
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty file" in one_line_error(tmp_path / "empty.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert "unsupported file format" in one_line_error(tmp_path / "notes.txt")
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp_path / "ok.png")
    whole = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[:len(whole) // 2])
    assert "unreadable PNG" in one_line_error(tmp_path / "truncated.png")
    dicom = write_dicom(tmp_path / "ok.dcm", image).read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(dicom[:-2000])
    assert "pixel data" in one_line_error(tmp_path / "truncated.dcm")
    (tmp_path / "header.dcm").write_bytes(dicom[:300])
    assert "DICOM" in one_line_error(tmp_path / "header.dcm")
    assert "folder" in one_line_error(tmp_path)


def test_dicom_without_pixels_or_with_an_unsupported_syntax(tmp_path, image):
    path = write_dicom(tmp_path / "x.dcm", image)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(tmp_path / "no_pixels.dcm")
    assert "no pixel data" in one_line_error(tmp_path / "no_pixels.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: no decoder exists
    ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    ds.save_as(tmp_path / "mpeg.dcm", enforce_file_format=False)
    assert "transfer syntax" in one_line_error(tmp_path / "mpeg.dcm")


def test_dicom_empty_image(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", np.zeros((4, 4), np.float32))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns, ds.PixelData = 0, 0, b""
    ds.save_as(tmp_path / "empty.dcm")
    message = one_line_error(tmp_path / "empty.dcm")  # pydicom refuses 0 rows / columns
    assert "unreadable pixel data" in message and "Columns" in message


def test_compressed_tar_is_decompressed_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMO_KERAS_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "many.tar.gz"
    payloads = {f"m{i}.png": bytes([i]) * (1000 + i) for i in range(20)}
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in payloads.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    from mammo_keras.data.archive import list_members, read_member
    assert list_members(archive) == list(payloads)
    for name in reversed(list(payloads)):  # backwards: random access, not a stream
        assert read_member(archive, name) == payloads[name]
    cached = list((tmp_path / "cache").glob("many-*.tar"))
    assert len(cached) == 1 and tarfile.is_tarfile(cached[0])
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"junk" * 10)
    with pytest.raises(DataError, match=r"broken\.tar\.gz: unreadable archive"):
        list_members(tmp_path / "broken.tar.gz")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cached[0].name]  # no leftovers


def test_images_that_cannot_be_mammograms_are_refused_with_the_reason(tmp_path, image):
    Image.new("L", (1, 1), 200).save(tmp_path / "pixel.png")
    assert "1 x 1 px is smaller than 16 px on a side" in one_line_error(tmp_path / "pixel.png")
    Image.new("L", (64, 64), 0).save(tmp_path / "blank.png")
    assert "blank image: every pixel is 0" in one_line_error(tmp_path / "blank.png")
    blank = write_dicom(tmp_path / "blank.dcm", np.full((64, 64), 0.5, np.float32))
    assert "blank image" in one_line_error(blank)
    assert read_image(blank, mammogram=False)[0].shape == (64, 64)  # a normal film's mask
    pixels = np.asarray(image, np.float32).copy()
    pixels[3, 4] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "nan.tiff")
    assert "not finite" in one_line_error(tmp_path / "nan.tiff")


def test_impossible_dicom_tags_are_data_errors(tmp_path, image):
    path = write_dicom(tmp_path / "x.dcm", image, window=(1500.0, 1000.0))
    ds = pydicom.dcmread(path)
    ds.WindowWidth = 0
    ds.save_as(tmp_path / "width0.dcm")
    assert "cannot apply its rescale / window tags" in one_line_error(tmp_path / "width0.dcm")
    ds = pydicom.dcmread(write_dicom(tmp_path / "y.dcm", image))
    ds.RescaleSlope, ds.RescaleIntercept = "1e308", "0"
    ds.save_as(tmp_path / "slope.dcm")
    assert "not finite" in one_line_error(tmp_path / "slope.dcm")


def test_the_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, image, monkeypatch):
    import tracemalloc

    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", image))
    ds.Rows = ds.Columns = 60000  # the header claims 3.6 gigapixels; the pixels are few
    ds.save_as(tmp_path / "claims.dcm")
    Image.new("1", (12000, 12000)).save(tmp_path / "huge.png")  # 144 MP in a few kilobytes
    assert (tmp_path / "huge.png").stat().st_size < 100_000
    tracemalloc.start()
    for name, shape in (("claims.dcm", "60000 x 60000 px"), ("huge.png", "12000 x 12000 px")):
        assert f"{shape}" in one_line_error(tmp_path / name)
        assert "over the limit of 100 megapixels" in one_line_error(tmp_path / name)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50e6  # nothing of the claimed size was allocated
    monkeypatch.setenv("MAMMO_KERAS_MAX_PIXELS", "1000")
    assert "over the limit of 0.001 megapixels" in one_line_error(write_dicom(tmp_path / "z.dcm",
                                                                            image))


@pytest.mark.parametrize("modality, meaning", [("CT", "computed tomography"),
                                               ("MR", "magnetic resonance"), ("XC", "")])
def test_a_dicom_of_another_modality_is_not_a_mammogram(tmp_path, image, modality, meaning):
    path = write_dicom(tmp_path / "scan.dcm", image)
    dataset = pydicom.dcmread(path)
    dataset.Modality = modality
    dataset.save_as(path)
    shown = f" ({meaning})" if meaning else ""
    with pytest.raises(DataError, match=rf"scan.dcm: Modality {modality}{re.escape(shown)}: "
                                        r"not a mammogram \(MG\)"):
        read_image(path)
    dataset.Modality = "DX"  # a digitised film exported as general radiography: read
    dataset.save_as(path)
    read_image(path)


def test_a_multi_frame_object_is_read_only_with_a_frame_chosen(tmp_path, image, monkeypatch):
    from mammo_keras.data.dicom import BREAST_TOMOSYNTHESIS, FRAME_VARIABLE

    path = write_dicom(tmp_path / "dbt.dcm", image)
    dataset = pydicom.dcmread(path)
    frames = [np.round(np.clip(image * scale, 0, 1) * 4095).astype(np.uint16)
              for scale in (0.2, 1.0, 0.6)]
    dataset.NumberOfFrames = 3
    dataset.SOPClassUID = BREAST_TOMOSYNTHESIS
    dataset.PixelData = np.stack(frames).tobytes()
    dataset.save_as(path)
    monkeypatch.delenv(FRAME_VARIABLE, raising=False)
    with pytest.raises(DataError, match=r"dbt.dcm: a breast tomosynthesis object of 3 frames, "
                                        r"not one 2-D mammogram"):
        read_image(path)
    monkeypatch.setenv(FRAME_VARIABLE, "middle")
    middle, _ = read_image(path)
    np.testing.assert_allclose(middle, frames[1] / 4095, atol=1e-6)
    monkeypatch.setenv(FRAME_VARIABLE, "7")
    with pytest.raises(DataError, match="choose first, middle, last or a frame index below 3"):
        read_image(path)


def test_a_16_bit_png_of_0_and_1_is_a_mask_not_a_film(tmp_path):
    mask = np.zeros((64, 48), np.uint16)
    mask[20:40, 10:30] = 1
    Image.fromarray(mask).save(tmp_path / "label.png")
    with pytest.raises(DataError, match=r"label.png: binary image \(values 0 and 0.00392 only\): "
                                        r"a mask or a label map, not a mammogram"):
        read_image(tmp_path / "label.png")
    mask_image, _ = read_image(tmp_path / "label.png", mammogram=False)  # read as a mask
    assert mask_image.max() > 0
