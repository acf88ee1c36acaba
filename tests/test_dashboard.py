"""The dashboard: its modules against independent references, every page through Streamlit's
AppTest (good and bad uploads), and the served app in a real headless Chromium."""

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pydicom
import pytest
import yaml
from PIL import Image
from sklearn import metrics as sk

from mammo_keras.cli import main
from mammo_keras.dashboard import (case_report, decide, error_cases, load_cohort, model_card,
                                   model_card_markdown, operating_point, read_upload,
                                   window_level)
from mammo_keras.data.limits import MAX_PIXELS
from mammo_keras.dashboard.demo_model import DEMO_CONFIG, find_demo_run, train_demo_model
from mammo_keras.devtools.local_ports import free_ports
from mammo_keras.dashboard.launch import streamlit_command, wait_until_serving
from mammo_keras.data.errors import DataError
from mammo_keras.data.preprocessing import preprocess
from mammo_keras.data.readers import read_image
from mammo_keras.training import train

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "mammo_keras" / "dashboard" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
TINY_RUN = {"name": "dashboard-tiny",
            "data": {"synthetic": {"count": 30, "size": 256}, "image_size": 64,
                     "split": [0.4, 0.2, 0.4]},
            "training": {"epochs": 2, "batch_size": 4, "tensorboard": False},
            "evaluation": {"resamples": 20}}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A trained and evaluated run: model.keras, predictions.csv, metrics.json, done.json."""
    folder = tmp_path_factory.mktemp("dashboard") / "run"
    train(TINY_RUN, folder, verbose=0)
    return folder


@pytest.fixture(scope="module")
def predictions(run_folder) -> list[dict]:
    with open(run_folder / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def mammogram(predictions) -> tuple[str, bytes]:
    """A malignant phantom's DICOM file, as a browser would upload it."""
    path = next(Path(row["path"]) for row in predictions if row["label"] == "malignant")
    return path.name, path.read_bytes()


def reference_probabilities(run_folder: Path, image: np.ndarray) -> np.ndarray:
    """The model on the image, preprocessed as in training: independent of the dashboard."""
    model = keras.saving.load_model(run_folder / "model.keras")
    processed, _ = preprocess(image, int(model.input_shape[1]))
    return keras.ops.convert_to_numpy(model(processed[None], training=False))[0]


def corrupt_dicom(data: bytes) -> bytes:
    """The file with its pixel data cut short."""
    return data[: len(data) // 2]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- uploads, window, decision ------------------------------------------------------------

def test_read_upload_equals_read_image(run_folder, predictions):
    path = Path(predictions[0]["path"])
    image, meta = read_upload(path.name, path.read_bytes())
    reference, _ = read_image(path)
    np.testing.assert_array_equal(image, reference)
    assert meta["format"] == "dicom"


@pytest.mark.parametrize("name, data, problem", [
    ("notes.png", b"just some text, not an image", "unsupported file format"),
    ("empty.dcm", b"", "empty file"),
    ("fake.dcm", b"\0" * 128 + b"DICM" + b"\xff" * 64, "DICOM"),
])
def test_read_upload_rejects_non_images_in_one_line(name, data, problem):
    with pytest.raises(DataError) as caught:
        read_upload(name, data)
    assert str(caught.value).startswith(f"{name}: ") and problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_upload_name_is_never_a_path(mammogram, tmp_path, monkeypatch):
    """A client may name its upload anything ("../../etc/passwd"): the bytes are decoded, the
    name only labels them, and nothing is read or written by it."""
    name, data = mammogram
    monkeypatch.chdir(tmp_path)
    image, meta = read_upload("../../etc/passwd", data)
    assert image.ndim == 2 and meta["format"] == "dicom"
    with pytest.raises(DataError, match=r"^/etc/hostname: unsupported file format"):
        read_upload("/etc/hostname", b"plain text, not the file of that name")
    assert not any(tmp_path.iterdir())


def test_read_upload_rejects_a_corrupt_dicom(mammogram):
    name, data = mammogram
    with pytest.raises(DataError, match=f"^{name}: .*(pixel|DICOM)"):
        read_upload(name, corrupt_dicom(data))


def test_read_upload_checks_sizes_before_decoding(mammogram):
    name, data = mammogram
    with pytest.raises(DataError, match="over the upload limit of 0.01 MB"):
        read_upload(name, data, max_upload_mb=0.01)
    side = int(np.sqrt(MAX_PIXELS)) + 100  # a bilevel PNG of ~100 MP is only kilobytes
    huge = png_bytes(Image.new("1", (side, side)))
    assert len(huge) < 2_000_000
    with pytest.raises(DataError, match=r"megapixels\) is over the limit"):
        read_upload("huge.png", huge)
    header = pydicom.dcmread(io.BytesIO(data))
    header.Rows = header.Columns = 20000  # the header claims 400 MP; the pixels are few
    buffer = io.BytesIO()
    header.save_as(buffer)
    with pytest.raises(DataError, match=r"megapixels\) is over the limit"):
        read_upload("claims-huge.dcm", buffer.getvalue())


def test_window_level_is_the_linear_ramp(rng):
    image = rng.random((5, 7)).astype(np.float32)
    for center, width in [(0.5, 1.0), (0.3, 0.2), (0.8, 0.5)]:
        expected = np.clip((image - (center - width / 2)) / width, 0, 1)
        np.testing.assert_allclose(window_level(image, center, width), expected, atol=1e-6)


def test_decide_uses_the_positive_class_and_the_threshold():
    names = ["normal", "benign", "malignant"]
    assert decide([0.5, 0.2, 0.3], names, 0.3) == {"positive": "malignant", "p_positive": 0.3,
                                                   "flagged": True, "most_likely": "normal"}
    assert not decide([0.5, 0.2, 0.3], names, 0.31)["flagged"]
    assert decide([0.1, 0.2, 0.3, 0.4], ["A", "B", "C", "D"], 0.5)["positive"] == "D"


# --- run folder: predictions.csv, cohort, card, report ------------------------------------

def test_predictions_csv_holds_the_models_probabilities(run_folder, predictions):
    done = json.loads((run_folder / "done.json").read_text())
    assert len(predictions) == done["images"]["test"]
    for row in predictions[:6]:
        image, _ = read_image(row["path"])
        expected = reference_probabilities(run_folder, image)
        got = [float(row[f"p_{name}"]) for name in ("normal", "benign", "malignant")]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert row["prediction"] == ["normal", "benign", "malignant"][int(np.argmax(expected))]
        assert json.loads(row["rois"]) == []  # phantoms come with masks, not ROI circles
        mask = np.asarray(Image.open(json.loads(row["masks"])[0]))
        assert (row["label"] == "normal") == (mask.max() == 0)


def test_operating_points_lie_on_the_sklearn_roc_curve(run_folder, predictions):
    cohort = load_cohort(run_folder)
    truth = np.array([row["label"] == "malignant" for row in predictions])
    scores = np.array([float(row["p_malignant"]) for row in predictions])
    fpr, tpr, thresholds = sk.roc_curve(truth, scores)
    for false_rate, true_rate, threshold in zip(fpr[1:], tpr[1:], thresholds[1:]):
        point = operating_point(cohort, float(threshold))
        assert point["sensitivity"] == pytest.approx(true_rate)
        assert 1 - point["specificity"] == pytest.approx(false_rate)
        assert point["tp"] + point["fp"] + point["tn"] + point["fn"] == len(predictions)
    everything = operating_point(cohort, 0.0)
    assert everything["sensitivity"] == 1.0 and everything["specificity"] == 0.0


def test_error_cases_are_the_misclassified_at_the_threshold(run_folder, predictions):
    cohort = load_cohort(run_folder)
    threshold = float(np.median([float(row["p_malignant"]) for row in predictions]))
    missed = error_cases(cohort, threshold, "false negatives")
    false_alarms = error_cases(cohort, threshold, "false positives")
    point = operating_point(cohort, threshold)
    assert (len(missed), len(false_alarms)) == (point["fn"], point["fp"])
    assert all(row["label"] == "malignant" and float(row["p_malignant"]) < threshold
               for row in missed)
    assert all(row["label"] != "malignant" and float(row["p_malignant"]) >= threshold
               for row in false_alarms)
    scores = [float(row["p_malignant"]) for row in false_alarms]
    assert scores == sorted(scores, reverse=True)


def test_load_cohort_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no predictions.csv"):
        load_cohort(tmp_path)


def test_model_card_reports_the_run(run_folder):
    done = json.loads((run_folder / "done.json").read_text())
    card = model_card(run_folder / "model.keras")
    assert (card["backbone"], card["head"]) == ("baseline_cnn", "gagm_se")
    value, low, high = card["metrics"]["accuracy"]
    assert value == done["metrics"]["accuracy"]
    assert [low, high] == done["confidence_intervals"]["accuracy"]
    text = model_card_markdown(card)
    assert f"{value:.3f}" in text and "Not for diagnosis" in text and "Intended use" in text


def test_model_card_of_an_exported_artefact(run_folder, tmp_path):
    from mammo_keras.export import export_model

    export_model(run_folder / "model.keras", tmp_path, fmt="tflite", samples=4)
    artefact = next(tmp_path.rglob("*.tflite"))
    card = model_card(artefact)
    assert card["format"] == "tflite" and card["backbone"] == "baseline_cnn"
    assert card["metrics"]["accuracy"][0] == model_card(run_folder / "model.keras")[
        "metrics"]["accuracy"][0]


@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_case_report_is_a_real_file(fmt):
    picture = Image.fromarray(np.full((200, 100, 3), 128, np.uint8))
    names = ["normal", "benign", "malignant"]
    decision = decide([0.1, 0.2, 0.7], names, 0.5)
    data = case_report(picture, "case.dcm", [0.1, 0.2, 0.7], names, decision, 0.5,
                       "model.keras", "gradcam of class malignant", fmt=fmt)
    if fmt == "pdf":
        assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:]
    else:
        assert Image.open(io.BytesIO(data)).size == (827, 1169)  # A4 at 100 dpi


# --- demo model ---------------------------------------------------------------------------

def test_demo_config_is_the_quickstart_experiment():
    quickstart = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
    assert {**quickstart, "name": DEMO_CONFIG["name"]} == DEMO_CONFIG


def test_demo_model_trains_once_with_progress(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./runs/quickstart here
    assert find_demo_run(tmp_path / "home") is None
    reports = []
    overrides = ("data.synthetic.count=12", "data.image_size=32", "training.epochs=2",
                 "training.batch_size=4", "training.tensorboard=false",
                 "evaluation.resamples=10", "data.split=[0.5,0.25,0.25]")
    folder = train_demo_model(tmp_path / "home", lambda f, text: reports.append((f, text)),
                              overrides)
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("epoch 2 of 2" in text for _, text in reports)
    assert find_demo_run(tmp_path / "home") == folder
    started = time.monotonic()
    train_demo_model(tmp_path / "home", overrides=overrides)  # finished: reused, not retrained
    assert time.monotonic() - started < 5


# --- the command --------------------------------------------------------------------------

def test_dashboard_command_rejects_bad_options_in_one_line(tmp_path, capsys):
    assert main(["dashboard", "--model", str(tmp_path / "missing.keras")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing.keras: model not found")
    assert main(["dashboard", "--results", str(tmp_path)]) == 2
    assert "not an evaluated run folder" in capsys.readouterr().err


def test_streamlit_command_sets_the_upload_limit():
    command = streamlit_command(8600, "localhost", 2.5)
    assert "--server.maxUploadSize=3" in command and "--server.port=8600" in command
    assert "--server.headless=true" in command and str(APP) in command


# --- every page through AppTest -----------------------------------------------------------

@pytest.fixture
def app(run_folder, monkeypatch):
    """The app on the test run's model, as `mammo-keras dashboard --model` starts it."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    monkeypatch.setenv("MAMMO_KERAS_DASHBOARD_MODEL", str(run_folder / "model.keras"))
    monkeypatch.setenv("MAMMO_KERAS_DASHBOARD_MAX_UPLOAD_MB", "5")
    monkeypatch.delenv("MAMMO_KERAS_DASHBOARD_RESULTS", raising=False)
    test = AppTest.from_file(str(APP), default_timeout=180)
    test.run()
    assert not test.exception
    return test


def show(app, page: str):
    app.sidebar.radio(key="page").set_value(page).run()
    assert not app.exception, app.exception
    return app


def table_probabilities(app) -> dict[str, float]:
    table = next(m.value for m in app.markdown if m.value.startswith("| class | probability"))
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return {name.strip(): float(value) for name, value in rows}


def test_single_case_page_shows_probabilities_decision_and_heatmap(app, run_folder,
                                                                   mammogram):
    assert "Not for diagnosis" in app.sidebar.warning[0].value
    assert "Upload a mammogram" in app.info[0].value
    name, data = mammogram
    app.file_uploader(key="upload").set_value((name, data, "application/dicom")).run()
    assert not app.exception and not app.error
    image, _ = read_upload(name, data)
    expected = reference_probabilities(run_folder, image)
    shown = table_probabilities(app)
    np.testing.assert_allclose([shown[k] for k in ("normal", "benign", "malignant")],
                               expected, atol=1e-3)
    assert any("trained on synthetic phantoms only" in warning.value
               for warning in app.warning)  # what the model knows, beside its answer
    assert len(app.get("image")) == 1
    app.sidebar.slider(key="threshold").set_value(0.0).run()
    assert app.error[0].value.startswith("Flagged for review: P(malignant)")
    app.sidebar.slider(key="threshold").set_value(1.0).run()
    assert app.success[0].value.startswith("Not flagged")
    for key, value in [("case_opacity", 0.9), ("window_center", 0.3), ("window_width", 0.4)]:
        app.slider(key=key).set_value(value).run()
        assert not app.exception and len(app.get("image")) == 1
    app.radio(key="case_method").set_value("Grad-CAM++").run()
    app.selectbox(key="case_class").set_value("benign").run()
    assert not app.exception
    assert "gradcam++ of class benign" in app.get("image")[0].captions[0]
    # the crop box is drawn and explained; the phantom's DICOM tags decide the flip
    assert "yellow: the breast crop the model sees" in app.get("image")[0].captions[0]
    assert "from the DICOM tags" in app.get("image")[0].captions[0]


def test_the_same_bytes_as_a_left_and_a_right_film_are_analysed_apart(app, mammogram):
    """The session's analyses are keyed on everything that changes them: an upload of the
    same pixels named as a right film after a left one is flipped, not the cached left one."""
    name, data = mammogram
    image, _ = read_upload(name, data)
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(buffer, format="PNG")
    captions = {}
    for side in ("L", "R"):
        app.file_uploader(key="upload").set_value((f"case_{side}_CC.png", buffer.getvalue(),
                                                   "image/png")).run()
        assert not app.exception and not app.error
        captions[side] = app.get("image")[0].captions[0]
    assert "not flipped: laterality L" in captions["L"]
    assert "flipped: laterality R" in captions["R"] and "not flipped" not in captions["R"]


def test_crop_box_is_drawn_where_the_model_looked():
    """A flipped geometry is drawn on the unflipped picture, scaled to the display."""
    from mammo_keras.dashboard.cases import CROP_COLOUR, draw_crop_box

    picture = Image.new("RGB", (80, 100))  # shown at half the original 200 x 160
    marked = np.asarray(draw_crop_box(picture, [1, 20, 40, 120, 60], (200, 160)))
    yellow = np.all(marked == CROP_COLOUR, axis=-1)
    rows, cols = np.nonzero(yellow)
    assert (rows.min(), rows.max()) == (10, 69)  # top 20 .. bottom 140, halved
    assert (cols.min(), cols.max()) == (30, 59)  # unflipped: left 160 - 40 - 60 = 60


@pytest.mark.parametrize("bad", ["not an image", "corrupt DICOM", "huge file"])
def test_bad_uploads_show_one_line_and_the_app_goes_on(app, mammogram, bad):
    name, data = mammogram
    upload = {"not an image": ("report.png", b"%PDF-1.4 not a picture", "image/png"),
              "corrupt DICOM": (name, corrupt_dicom(data), "application/dicom"),
              "huge file": ("huge.dcm", data + b"\0" * 6_000_000, "application/dicom")}[bad]
    app.file_uploader(key="upload").set_value(upload).run()
    assert not app.exception
    message = app.error[0].value
    assert message.startswith(f"Cannot use this upload. {upload[0]}: ") and "\n" not in message
    assert {"not an image": "unsupported file format", "corrupt DICOM": "pixel data",
            "huge file": "over the upload limit of 5 MB"}[bad] in message
    app.file_uploader(key="upload").set_value((name, data, "application/dicom")).run()
    assert not app.exception and not app.error and table_probabilities(app)


def test_cohort_page_shows_the_operating_point_and_the_errors(app, run_folder):
    show(app, "Cohort")
    cohort = load_cohort(run_folder)
    point = operating_point(cohort, 0.5)
    shown = {metric.label: metric.value for metric in app.metric}
    expected = "n/a" if point["sensitivity"] is None else f"{point['sensitivity']:.3f}"
    assert shown["Sensitivity"] == expected
    for kind, threshold in [("false negatives", 1.0), ("false positives", 0.0)]:
        app.sidebar.slider(key="threshold").set_value(threshold).run()
        app.radio(key="error_kind").set_value(kind).run()
        assert not app.exception and not app.error
        cases = error_cases(cohort, threshold, kind)
        assert app.selectbox(key="error_case").label == f"{len(cases)} {kind}"
        figure, case = app.get("image")  # the ROC / confusion figure, the case's heat-map
        assert "outlined in green" in case.captions[0]


def test_cohort_page_without_results_says_how_to_get_them(run_folder, monkeypatch, tmp_path):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    model = tmp_path / "model.keras"
    shutil.copy(run_folder / "model.keras", model)  # no run folder around it
    monkeypatch.setenv("MAMMO_KERAS_DASHBOARD_MODEL", str(model))
    app = AppTest.from_file(str(APP), default_timeout=180).run()
    show(app, "Cohort")
    assert "--results" in app.info[0].value
    show(app, "Model card")  # the card travels inside the .keras file, run folder or not
    done = json.loads((run_folder / "done.json").read_text())
    assert f"| accuracy | {done['metrics']['accuracy']:.3f} |" in app.markdown[0].value


def test_model_card_page(app, run_folder):
    show(app, "Model card")
    done = json.loads((run_folder / "done.json").read_text())
    text = app.markdown[0].value
    assert f"| accuracy | {done['metrics']['accuracy']:.3f} |" in text
    assert "Not for diagnosis" in text


def test_started_without_a_model_it_uses_the_demo_run(run_folder, monkeypatch, tmp_path):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAMMO_KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MAMMO_KERAS_DASHBOARD_MODEL", raising=False)
    shutil.copytree(run_folder, tmp_path / "home" / "dashboard-demo")
    app = AppTest.from_file(str(APP), default_timeout=180).run()
    assert not app.exception and not app.error
    show(app, "Cohort")
    assert not app.error and app.metric


# --- the served app in a real browser -----------------------------------------------------

def start_dashboard(folder: Path, *arguments: str) -> tuple[subprocess.Popen, str]:
    """`mammo-keras dashboard ARGUMENTS` in a child process, once it answers: (process, url)."""
    port = free_ports(1, "localhost")[0]
    log_path = folder / f"server-{port}.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "mammo_keras.cli", "dashboard",
                                   "--port", str(port), *arguments], stdout=log,
                                  stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    wait_until_serving(url, server, log_path)
    return server, url


@pytest.fixture
def served(run_folder):
    """`mammo-keras dashboard --model ...` in a child process, until it answers."""
    server, url = start_dashboard(run_folder.parent, "--model", str(run_folder / "model.keras"),
                                  "--max-upload-mb", "5")
    yield url
    server.terminate()
    server.wait(timeout=30)


def _port_is_free(port: int) -> bool:
    """Nothing listens on `port` (connections the server closed may linger in TIME_WAIT)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("localhost", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_launcher_stops_the_server(tmp_path, stop):
    server, url = start_dashboard(tmp_path)
    port = int(url.rsplit(":", 1)[1])
    status = Path(f"/proc/{server.pid}/status").read_text()
    launcher_mib = int(next(line.split()[1] for line in status.splitlines()
                            if line.startswith("VmHWM"))) / 1024
    assert launcher_mib < 200, launcher_mib  # the launcher holds no TensorFlow
    assert not _port_is_free(port)
    children = [int(pid) for task in Path(f"/proc/{server.pid}/task").iterdir()
                for pid in (task / "children").read_text().split()]
    assert children  # Streamlit runs as the launcher's child
    server.send_signal(stop)
    assert server.wait(timeout=60) == 0
    for child in children:
        assert not Path(f"/proc/{child}").exists(), f"Streamlit ({child}) outlived its launcher"
    deadline = time.monotonic() + 30
    while not _port_is_free(port):  # nothing is left listening
        assert time.monotonic() < deadline, f"port {port} still held after the launcher stopped"
        time.sleep(0.5)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                    "(apt-get install chromium); .ci/run installs it")
def test_in_headless_chromium(served, mammogram, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (the dev extra has it)")
    name, data = mammogram
    (tmp_path / name).write_bytes(data)
    (tmp_path / "notes.png").write_bytes(b"not a picture at all")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.goto(served)
        page.get_by_text("Upload a mammogram to see").wait_for(timeout=120_000)
        uploader = page.locator("input[type=file]")
        uploader.set_input_files(str(tmp_path / "notes.png"))
        page.get_by_text("Cannot use this upload. notes.png: unsupported file format").wait_for(
            timeout=60_000)
        uploader.set_input_files(str(tmp_path / name))
        page.get_by_text("P(malignant) =").wait_for(timeout=120_000)
        table = page.locator("table").first.inner_text()
        assert all(label in table for label in ("normal", "benign", "malignant"))
        page.wait_for_timeout(1000)  # let the image paint
        screenshot = tmp_path / "dashboard.png"
        page.screenshot(path=str(screenshot), full_page=True)
        with page.expect_download(timeout=60_000) as download:
            page.get_by_text("Case report (PDF)").click()
        report = Path(download.value.path()).read_bytes()
        browser.close()
    assert report.startswith(b"%PDF")
    shot = np.asarray(Image.open(screenshot).convert("L"), np.float32)
    assert shot.shape[1] == 1400 and shot.std() > 10  # a rendered page, not a blank one
    if os.environ.get("MAMMO_KERAS_SCREENSHOTS"):
        shutil.copy(screenshot, os.environ["MAMMO_KERAS_SCREENSHOTS"])


# --- a zero-shot density model --------------------------------------------------------------

@pytest.fixture
def zero_shot_app(tmp_path, monkeypatch):
    """The app serving a zero-shot density classifier of a small random CLIP model."""
    pytest.importorskip("keras_hub", reason="CLIP models need the clip extra (keras-hub)")
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from mammo_keras.models.zero_shot import build_zero_shot
    from tests.clip_reference import write_small_random_clip

    write_small_random_clip(tmp_path / "clip.keras")
    build_zero_shot(str(tmp_path / "clip.keras"), "mama", input_shape=(64, 64, 1)).save(
        tmp_path / "zero_shot.keras")
    st.cache_resource.clear()
    monkeypatch.setenv("MAMMO_KERAS_DASHBOARD_MODEL", str(tmp_path / "zero_shot.keras"))
    monkeypatch.delenv("MAMMO_KERAS_DASHBOARD_RESULTS", raising=False)
    test = AppTest.from_file(str(APP), default_timeout=180)
    test.run()
    assert not test.exception, test.exception
    return test, tmp_path


def _prompt_texts(name: str) -> list[str]:
    from mammo_keras.models.zero_shot import DENSITY_PROMPTS

    return [text for prompts in DENSITY_PROMPTS[name].values() for text in prompts]


def test_a_zero_shot_model_shows_its_density_and_prompts_which_can_be_edited(zero_shot_app,
                                                                              mammogram):
    from mammo_keras.models.zero_shot import build_zero_shot

    app, folder = zero_shot_app
    name, data = mammogram
    app.file_uploader(key="upload").set_value((name, data, "application/dicom")).run()
    assert not app.exception and not app.error, (app.exception, app.error)
    before = table_probabilities(app)
    assert list(before) == ["A", "B", "C", "D"]
    density = next(box.value for box in app.info if box.value.startswith("Density "))
    best = max(before, key=before.get)
    assert density.startswith(f"Density {best} (P = {before[best]:.2f}); dense (C + D): P = ")
    assert "gradcam of class" in app.get("image")[0].captions[0]  # on the ViT's patch tokens
    assert app.text_area(key="prompt_A").value == "The breast is almost entirely fat."
    edited = "The breasts are extremely dense, which lowers the sensitivity of mammography."
    app.text_area(key="prompt_A").set_value(edited).run()
    app.button(key="apply_prompts").click().run()
    assert not app.exception and not app.error, (app.exception, app.error)
    after = table_probabilities(app)
    image, _ = read_upload(name, data)
    reference = build_zero_shot(str(folder / "clip.keras"), {
        "A": [edited], "B": _prompt_texts("mama")[1:2], "C": _prompt_texts("mama")[2:3],
        "D": _prompt_texts("mama")[3:4]}, input_shape=(64, 64, 1))
    processed, _ = preprocess(image, 64)
    expected = keras.ops.convert_to_numpy(reference(processed[None]))[0]
    np.testing.assert_allclose([after[k] for k in "ABCD"], expected, atol=1e-3)
    assert not np.allclose([after[k] for k in "ABCD"], [before[k] for k in "ABCD"], atol=1e-4)
