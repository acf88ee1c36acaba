"""INbreast adapter: INbreast.csv + AllDICOMs + AllXML (OsiriX plist), written synthetically."""

import pytest
from scipy import ndimage

from mammo_keras.data import DataError, generate_phantom, load_records, synthetic_specs
from mammo_keras.data.adapters.inbreast import label_from_birads
from mammo_keras.data.synthetic_writer import write_synthetic


@pytest.mark.parametrize("birads,label", [("1", "normal"), ("2", "benign"), ("3", "benign"),
                                          ("4a", "malignant"), ("4c", "malignant"),
                                          ("5", "malignant"), ("6", "malignant"), ("", None),
                                          ("x", None)])
def test_birads_convention(birads, label):
    assert label_from_birads(birads) == label


@pytest.fixture
def inbreast(tmp_path):
    return write_synthetic(tmp_path / "inbreast", 14, size=256, fmt="inbreast", seed=8)


def test_records_and_polygon_masks(inbreast):
    records = load_records("inbreast", root=inbreast)
    assert len(records) == 14 and records.skipped == []
    specs = synthetic_specs(14, seed=8, size=256)
    for record, spec in zip(records, specs):
        assert (record.label, record.density, record.laterality, record.view) == (
            spec.label, spec.density, spec.laterality, spec.view)
        _, truth, _ = generate_phantom(spec)
        mask = record.mask(truth.shape)
        if spec.finding.endswith("mass") and truth.any():
            iou = (mask & truth).sum() / (mask | truth).sum()
            assert iou > 0.8, iou  # the outline polygon reproduces the lesion
        elif truth.any():  # calcifications: every speck is under a point ROI
            labelled, count = ndimage.label(truth)
            assert all(mask[labelled == k].any() for k in range(1, count + 1))
        else:
            assert not mask.any()
    patients = {}
    for record in records:
        patients.setdefault(record.patient_id, set()).add(record.view)
    assert all(views == {"CC", "MLO"} for views in patients.values())
    assert load_records(inbreast).counts("source") == {"inbreast": 14}


def test_bad_rows_and_xml_are_reported(inbreast):
    table = inbreast / "INbreast.csv"
    lines = table.read_text().splitlines()
    first = lines[1].split(";")
    lines.append(";".join(first[:5] + ["99999999"] + first[6:]))  # no such DICOM
    unreadable = lines[2].split(";")
    lines[2] = ";".join(unreadable[:7] + ["?"])  # unreadable Bi-Rads
    table.write_text("\n".join(lines) + "\n")
    xml = next(p for p in sorted((inbreast / "AllXML").iterdir()) if p.stem != unreadable[5])
    xml.write_text("<plist><dict><key>Images</key>")  # truncated
    records = load_records("inbreast", root=inbreast)
    problems = [str(error) for error in records.skipped]
    assert len(records) == 12 and len(problems) == 3  # 14 rows - bad Bi-Rads - bad XML
    assert any("no DICOM file for File Name '99999999'" in p for p in problems)
    assert any("unreadable Bi-Rads '?'" in p for p in problems)
    assert any(p.startswith(str(xml)) and "unreadable ROI file" in p for p in problems)


def test_not_an_inbreast_folder(tmp_path):
    with pytest.raises(DataError, match="INbreast.csv"):
        load_records("inbreast", root=tmp_path)
