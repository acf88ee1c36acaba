"""The mammo-keras command: version, help, the models listing, one-line errors."""

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import mammo_keras
from mammo_keras.cli import main


def test_console_script_is_installed_and_reports_versions():
    beside_python = Path(sys.executable).parent / "mammo-keras"
    executable = str(beside_python) if beside_python.exists() else shutil.which("mammo-keras")
    assert executable, "the mammo-keras console script is not on PATH; install the package"
    result = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.startswith(f"mammo-keras {mammo_keras.__version__}, keras 3.")
    assert "tensorflow 2." in result.stdout


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in ["models", "data", "evaluate", "predict", "train", "run", "export", "explain",
                 "dashboard", "bench"]:
        assert name in text


@pytest.mark.parametrize("name", ["train", "run", "evaluate", "predict", "export", "explain",
                                  "dashboard", "bench"])
def test_every_subcommand_has_help(capsys, name):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: mammo-keras " + name in capsys.readouterr().out


def test_models_lists_backbones_and_heads(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for name in ["baseline_cnn", "convnext_tiny", "convnext_base", "inception_v3", "gagm_se"]:
        assert name in text


def test_models_count_params_matches_build_classifier(capsys):
    assert main(["models", "--count-params", "--image-size", "75", "--num-classes", "2"]) == 0
    rows = {tuple(line.split()[:2]): line.split()[2]
            for line in capsys.readouterr().out.splitlines()[2:]}
    assert len(rows) == 12
    assert rows[("convnext_tiny", "gap")] == f"{27_820_128 + 768 * 2 + 2:,}"
    assert rows[("convnext_base", "gap")] == f"{87_566_464 + 1024 * 2 + 2:,}"


def test_unknown_option_of_an_implemented_command_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_user_mistake_is_one_line_and_exit_2(capsys):
    assert main(["models", "--count-params", "--image-size", "40"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "too small" in error and "Traceback" not in error


def test_data_synth_inspect_split(tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert main(["data", "synth", "--out", str(out), "--count", "8", "--size", "256"]) == 0
    text = capsys.readouterr().out
    assert "8 synthetic images written" in text and "8 images, 4 patients" in text
    assert main(["data", "inspect", str(out)]) == 0
    assert "source   synthetic: 8" in capsys.readouterr().out
    manifest = tmp_path / "split.csv"
    assert main(["data", "split", "synthetic", "--root", str(out), "--out", str(manifest),
                 "--folds", "2"]) == 0
    table = capsys.readouterr().out
    assert "fold0" in table and "fold1" in table and manifest.exists()
    rows = manifest.read_text().splitlines()
    assert rows[0] == "path,patient_id,label,split" and len(rows) == 9


def test_data_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "nothing")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "neither a dataset name" in error
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "audit", str(tmp_path)])  # --split is required
    assert exit_info.value.code == 2 and "--split" in capsys.readouterr().err


def test_data_audit_finds_a_rotated_copy_across_splits(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from mammo_keras.data import generate_phantom, PhantomSpec

    for index in range(6):
        image = generate_phantom(PhantomSpec(seed=index, size=256))[0]
        label = ("normal", "benign", "malignant")[index % 3]
        (tmp_path / label).mkdir(exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / label / f"{index}.png")
    copy = np.asarray(Image.open(tmp_path / "normal" / "0.png")).T[::-1]  # rotated 90 degrees
    Image.fromarray(np.ascontiguousarray(copy)).save(tmp_path / "normal" / "0_rot.png")
    manifest = tmp_path / "split.csv"
    assert main(["data", "split", str(tmp_path), "--out", str(manifest), "--folds", "2",
                 "--seed", "1"]) == 0
    capsys.readouterr()
    rows = manifest.read_text().splitlines()[1:]
    fold_of = {row.split(",")[0].rsplit("/", 1)[-1]: row.split(",")[3] for row in rows}
    leaked = fold_of["0.png"] != fold_of["0_rot.png"]
    pairs_csv = tmp_path / "pairs.csv"
    status = main(["data", "audit", str(tmp_path), "--split", str(manifest), "--out",
                   str(pairs_csv)])
    text = capsys.readouterr().out
    assert status == (1 if leaked else 0)
    assert text.startswith(f"{1 if leaked else 0} near-duplicate pairs across splits")
    assert len(pairs_csv.read_text().splitlines()) == (2 if leaked else 1)  # header + pairs
    assert main(["data", "split", str(tmp_path), "--out", str(manifest), "--folds", "2",
                 "--seed", "1", "--group-duplicates"]) == 0
    capsys.readouterr()
    assert main(["data", "audit", str(tmp_path), "--split", str(manifest)]) == 0
    assert "0 near-duplicate pairs across splits" in capsys.readouterr().out


def test_a_user_mistake_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, capsys):
    bad = tmp_path / "broken.keras"
    bad.write_text("not a zip archive")
    assert main(["evaluate", str(bad), "--data", str(tmp_path), "--out",
                 str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "broken.keras: cannot be loaded as a Keras model" in error
    from mammo_keras import cli

    def internal_bug(args):
        raise ValueError("an internal invariant broke")

    with pytest.raises(ValueError, match="internal invariant"):
        cli._dispatch(SimpleNamespace(handler=internal_bug, command="evaluate"))


def test_a_bad_destination_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """predict / export / train learn that --out cannot be written before they load or compute."""
    import os

    import mammo_keras.export as export

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the destination was checked")

    monkeypatch.setattr(export, "load_predictor", no_work)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder.csv").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    model, image = str(tmp_path / "m.keras"), str(tmp_path / "i.png")
    cases = [(["predict", model, image, "--out", str(tmp_path / "a_file" / "p.csv")],
              "a_file is a file"),
             (["predict", model, image, "--out", str(tmp_path / "a_folder.csv")],
              "the output is a folder; name a file"),
             (["export", model, "--out", str(tmp_path / "a_file")],
              "the output folder is a file"),
             (["train", "--config", "c.yaml", "--out", str(tmp_path / "a_file" / "run")],
              "a_file is a file")]
    if os.geteuid() != 0:  # root writes anywhere: a read-only folder only binds other users
        cases.append((["predict", model, image, "--out", str(locked / "p.csv")],
                      "cannot write there (Permission denied)"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error, (argv, error)
        assert error.startswith(f"mammo-keras {argv[0]}: error: ")


def test_a_full_or_size_limited_disk_is_one_line(tmp_path):
    """Under a file-size limit (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) the phantom
    writer fails on its first image: one line naming the destination, exit 2."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = subprocess.run([sys.executable, "-m", "mammo_keras.cli", "data", "synth",
                             "--count", "2", "--out", str(tmp_path / "phantoms")],
                            capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("mammo-keras data: error: cannot write ") and "too large" in error
    assert "Traceback" not in result.stderr and ".partial" not in error


@pytest.mark.parametrize("command", ["explain", "export"])
def test_explain_and_export_on_a_size_limited_disk_are_one_line(tmp_path, command):
    """The two seen failing with a traceback under a file-size limit (a PIL OSError, a
    TensorFlow SaveV2 OutOfRangeError): one line, exit 2, nothing a loader would take."""
    import resource

    from mammo_keras.data import PhantomSpec, generate_phantom
    from mammo_keras.data.dicom_writer import write_dicom
    from mammo_keras.models import build_classifier

    build_classifier("baseline_cnn", "gap", 3, (64, 64, 1)).save(tmp_path / "m.keras")
    write_dicom(tmp_path / "case.dcm", generate_phantom(PhantomSpec(seed=1, size=512))[0])
    arguments = {"explain": [str(tmp_path / "case.dcm"), "--out", str(tmp_path / "out")],
                 "export": ["--out", str(tmp_path / "out")]}[command]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    result = subprocess.run([sys.executable, "-m", "mammo_keras.cli", command,
                             str(tmp_path / "m.keras"), *arguments], capture_output=True,
                            text=True, preexec_fn=limit, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"mammo-keras {command}: error: cannot write") and "too large" in error
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "out").glob("**/saved_model.pb"))
    assert not list((tmp_path / "out").glob("**/*.tflite"))


def test_a_run_folder_whose_config_is_not_a_mapping_is_named(tmp_path, capsys):
    import keras

    from mammo_keras.models import build_classifier

    keras.Model.save(keras.Model.from_config(build_classifier(
        "baseline_cnn", "gap", 3, (32, 32, 1)).get_config()), tmp_path / "model.keras")
    (tmp_path / "config.yaml").write_text("- a\n- b\n")
    assert main(["predict", str(tmp_path / "model.keras"), str(tmp_path / "x.png"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert "config.yaml: not a mammo-keras run config" in error and "\n" not in error


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from mammo_keras.models import build_classifier

    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_classifier("baseline_cnn", "gap", 3, (32, 32, 1)).save(path)
    return path


@pytest.mark.parametrize("command", [
    ["data", "inspect", "EMPTY"], ["data", "split", "EMPTY", "--out", "OUT/s.csv"],
    ["predict", "MODEL", "EMPTY", "--out", "OUT/p.csv"],
    ["explain", "MODEL", "EMPTY", "--out", "OUT/explained"],
    ["evaluate", "MODEL", "--data", "EMPTY", "--out", "OUT/evaluated"]])
def test_an_input_without_images_is_one_error_in_every_command(tmp_path, capsys, tiny_model,
                                                                command):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    argv = [word.replace("EMPTY", str(empty)).replace("MODEL", str(tiny_model))
            .replace("OUT", str(tmp_path)) for word in command]
    assert main(argv) == 2, argv
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"{empty}: no images found" in error, error
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "s.csv").exists()


def test_config_typos_suggest_the_key_and_name_the_override(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("training:\n  epoch: 3\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert f"{config}: unknown key 'training.epoch'; did you mean 'training.epochs'?" in error
    config.write_text("training:\n  epochs: 3\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r"),
                     "--set", "training.batch_sise=4"]) == 2
    error = capsys.readouterr().err
    assert "--set training.batch_sise=4: unknown key 'training.batch_sise'; did you mean " \
           "'training.batch_size'?" in error and str(config) not in error


def test_a_file_that_is_not_dicom_gets_our_message(tmp_path):
    from mammo_keras.data import DataError, read_image

    fake = tmp_path / "scan.dcm"
    fake.write_bytes(b"\0" * 200)
    with pytest.raises(DataError) as caught:
        read_image(fake)
    assert str(caught.value) == f"{fake}: not a DICOM file (no 'DICM' marker after the " \
                                "128-byte preamble and no file meta header)"
    assert "force" not in str(caught.value)


def test_the_data_is_given_positionally_or_as_an_option():
    from mammo_keras.cli import _merge_data_forms, build_parser
    from mammo_keras.errors import UserError

    parser = build_parser()
    for argv in (["evaluate", "m.keras", "DIR", "--out", "o"],
                 ["evaluate", "m.keras", "--data", "DIR", "--out", "o"]):
        args = parser.parse_args(argv)
        _merge_data_forms(args)
        assert args.data == "DIR"
    args = parser.parse_args(["predict", "m.keras", "a.dcm", "--data", "b/", "--out", "p.csv"])
    _merge_data_forms(args)
    assert args.inputs == ["a.dcm", "b/"]
    with pytest.raises(UserError, match="the data given twice"):
        _merge_data_forms(parser.parse_args(["evaluate", "m.keras", "A", "--data", "B",
                                             "--out", "o"]))
    with pytest.raises(UserError, match="explain needs image files or folders"):
        _merge_data_forms(parser.parse_args(["explain", "m.keras", "--out", "o"]))
