"""The `mammo-keras` command: parses arguments and calls the library.

User mistakes end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from mammo_keras import __version__
from mammo_keras.data.audit import DEFAULT_THRESHOLD, MAX_THRESHOLD
from mammo_keras.data.errors import DataError, no_images
from mammo_keras.data.synthetic import (DEFAULT_CONTRAST, DEFAULT_LESION_SCALE, MAX_SIZE,
                                        MIN_SIZE)
from mammo_keras.errors import UserError
from mammo_keras.trust import TRUST_VARIABLE, trusting_code

# Subcommands of the public interface that later milestones fill in: name -> (help, what brings it).


BACKENDS = ("tensorflow", "torch", "jax")


def _version_text() -> str:
    parts = [f"mammo-keras {__version__}"]
    for package in ("keras", "tensorflow"):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _phantom_size(text: str) -> int:
    value = _positive_int(text)
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"a phantom is {MIN_SIZE} to {MAX_SIZE} px high, "
                                         f"got {text}")
    return value


def _cmd_models(args: argparse.Namespace) -> int:
    """Print the backbones and heads; with --count-params build each and count its weights."""
    from mammo_keras.models import BACKBONES, HEADS, build_classifier

    if not args.count_params:
        print(f"{'backbone':<15}{'channels':>9}{'scaling':>11}{'min px':>8}{'imagenet':>10}")
        for spec in BACKBONES.values():
            print(f"{spec.name:<15}{spec.channels:>9}{spec.scaling:>11}{spec.min_size:>8}"
                  f"{'yes' if spec.has_imagenet else 'no':>10}")
        print(f"heads: {', '.join(HEADS)}")
        return 0
    size = args.image_size
    print(f"input {size}x{size}x1, {args.num_classes} classes")
    print(f"{'backbone':<15}{'head':<9}{'parameters':>13}{'embedding':>11}")
    for spec in BACKBONES.values():
        for head in HEADS:
            model = build_classifier(spec.name, head, args.num_classes, (size, size, 1))
            print(f"{spec.name:<15}{head:<9}{model.count_params():>13,}"
                  f"{model.get_layer('embedding').output.shape[-1]:>11}", flush=True)
    return 0


PROGRESS_INTERVAL_S = 10.0  # off a terminal, a progress line at most this often


def _progress(description: str, total: int):
    """Progress on stderr: a tqdm bar on a terminal (the `progress` extra), else a line
    "description: done / total" at most every PROGRESS_INTERVAL_S seconds and at the end
    (logs of long runs show it). Returns the update callback, called as update(done, total)."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or not sys.stderr.isatty():
        return _progress_lines(description)

    bar = tqdm(total=total, desc=description, unit="image", file=sys.stderr)

    def update(done: int, _total: int) -> None:
        bar.total = _total
        bar.update(done - bar.n)
        if done >= _total:
            bar.close()
    return update


def _progress_lines(description: str):
    import time

    last = [time.monotonic()]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= PROGRESS_INTERVAL_S:
            last[0] = now
            print(f"{description}: {done} / {total}", file=sys.stderr, flush=True)
    return update


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from mammo_keras.data import load_records, write_synthetic

    out = write_synthetic(args.out, args.count, size=args.size, fmt=args.format, seed=args.seed,
                          contrast=args.contrast, lesion_scale=args.lesion_scale,
                          progress=_progress(f"writing {args.format}", args.count))
    print(f"{args.count} synthetic images written to {out} ({args.format} layout)")
    print(load_records(out).summary())
    return 0


def _cmd_data_patches(args: argparse.Namespace) -> int:
    from mammo_keras.data import load_records
    from mammo_keras.data.patches import PatchOptions, make_patches

    options = PatchOptions(size=args.size, field_mm=args.field_mm, kinds=args.kinds,
                           normals_per_film=args.normals_per_film, copies=args.copies,
                           min_breast_share=args.min_breast_share, seed=args.seed,
                           film_spacing_mm=args.film_spacing_mm)
    records = load_records(args.dataset, root=args.root)
    summary = make_patches(records, args.out, options, _progress("cutting patches", len(records)))
    per_label = ", ".join(f"{label}: {count}" for label, count in summary["per_label"].items())
    print(f"{summary['patches']} patches of {args.size} px "
          f"({args.field_mm:g} mm, {args.field_mm / args.size:.3g} mm/px) in {args.out}: "
          f"{per_label}; {summary['lesions']} lesions, {summary['films']} films, "
          f"{summary['patients']} patients")
    for reason in summary["skipped"]:
        print(f"skipped {reason}")
    return 3 if summary["skipped"] else 0


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from mammo_keras.data import load_images, load_records

    records = load_records(args.dataset, root=args.root) if args.root else \
        load_images(args.dataset)  # a site's plain folder: its images, unlabelled
    print(records.summary())
    return 0


def _cmd_data_crops(args: argparse.Namespace) -> int:
    from mammo_keras.data.crop_sheet import crop_contact_sheet
    from mammo_keras.predict import collect_files

    files, missing = collect_files(args.inputs)
    if not files:
        raise UserError("no image files found in " + ", ".join(args.inputs))
    files = files[:args.max]
    out, rows, skipped = crop_contact_sheet(files, args.out, size=args.size,
                                            window=args.window, columns=args.columns)
    print(f"{len(rows)} crops drawn in {out}")
    for error in missing + skipped:
        print(f"skipped {error}")
    return 0


def _cmd_data_split(args: argparse.Namespace) -> int:
    from mammo_keras.data import kfold_records, load_records, split_records, write_split_manifest
    from mammo_keras.data.splits import split_table

    records = load_records(args.dataset, root=args.root)
    stratify = None if args.stratify == "none" else args.stratify
    groups = None
    if args.group_duplicates:
        from mammo_keras.data.audit import duplicate_groups, hash_records

        hashes, kept, skipped = hash_records(records, _progress("hashing", len(records)))
        records.skipped.extend(skipped)
        groups = duplicate_groups(records, args.threshold, hashes=(hashes, kept))
    if args.folds:
        folds = kfold_records(records, folds=args.folds, seed=args.seed, stratify=stratify,
                              groups=groups)
        assignment = {f"fold{k}": [r for r, f in zip(records, folds) if f == k]
                      for k in range(args.folds)}
    else:
        assignment = split_records(records, args.fractions, seed=args.seed, stratify=stratify,
                                   groups=groups)
    path = write_split_manifest(args.out, assignment)
    print(split_table(assignment))
    print(f"manifest written to {path}")
    if records.skipped:
        print(f"{len(records.skipped)} items skipped while reading the dataset:")
        for error in records.skipped:
            print(f"  {error}")
    return 0


def _cmd_data_audit(args: argparse.Namespace) -> int:
    from mammo_keras.data import load_records, read_split_manifest
    from mammo_keras.data.audit import cross_split_duplicates, write_pairs

    records = load_records(args.dataset, root=args.root)
    assignment = read_split_manifest(args.split, records)
    total = sum(len(members) for members in assignment.values())
    result = cross_split_duplicates(assignment, args.threshold, _progress("hashing", total))
    pairs = result["pairs"]
    print(f"{len(pairs)} near-duplicate pairs across splits (threshold {args.threshold} of 256 "
          f"bits), {result['within_split']} within a split, {total} images")
    for path_a, split_a, path_b, split_b, distance in pairs[:args.show]:
        print(f"  {distance:>3}  {split_a}: {path_a}  <->  {split_b}: {path_b}")
    if len(pairs) > args.show:
        print(f"  ... {len(pairs) - args.show} more" + (f" in {args.out}" if args.out else ""))
    if args.out:
        write_pairs(args.out, pairs)
    for error in result["skipped"]:
        print(f"skipped {error}")
    return 1 if pairs else 0


def _print_headline(metrics: dict, intervals: dict, task: str, indent: str = "") -> None:
    """The task's report columns (`Task.report_columns`) that `metrics` holds, with intervals."""
    from mammo_keras.tasks import get_task_class

    columns = [key for key, _ in get_task_class(task).report_columns if key in metrics]
    for key in columns or [key for key, value in metrics.items() if isinstance(value, float)]:
        value, interval = metrics.get(key), intervals.get(key)
        span = f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
        print(f"{indent}{key:<18} {'n/a' if value is None else f'{value:.3f}'}{span}")


# Exit status of predict / evaluate / explain over a cohort: 0 every file processed, 2 an
# error (nothing processed), 3 a partial success (the results of every good file written, the
# bad files listed with their reasons in skipped.csv beside them).
EXIT_PARTIAL = 3


def _finish_cohort(skipped: list, report: Path) -> int:
    """Print and write the files a cohort command skipped (`report`: a CSV of path, reason,
    beside the results); the exit status: 0, or `EXIT_PARTIAL` when any was skipped."""
    from mammo_keras.atomic import write_csv_atomically

    if not skipped:
        return 0
    rows = [{"path": error.path, "reason": error.problem} if isinstance(error, DataError)
            else dict(zip(("path", "reason"), str(error).partition(": ")[::2]))
            for error in skipped]  # DataErrors, or their "<path>: <problem>" text
    write_csv_atomically(report, rows)
    for error in skipped:
        print(f"skipped {error}")
    print(f"{len(skipped)} skipped, listed in {report} (exit status {EXIT_PARTIAL}: partial "
          "success)")
    return EXIT_PARTIAL


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from mammo_keras.data import Records, load_records, read_split_manifest
    from mammo_keras.models import description_of, load_model
    from mammo_keras.tasks import task_for_model

    model = load_model(args.model)
    try:
        records = load_records(args.data, root=args.root)
    except UserError as error:
        if "not inside a class folder" not in str(error):
            raise
        raise UserError(f"{args.data}: no labelled images (no class folders such as normal / "
                        "benign / malignant): evaluate needs the truth; `mammo-keras predict "
                        f"{args.model} {args.data} --out predictions.csv` answers without it"
                        ) from None
    if args.split:
        subsets = read_split_manifest(args.split, records)
        if args.subset not in subsets:
            raise UserError(f"{args.split} has no subset {args.subset!r}; it has "
                            f"{sorted(subsets)}")
        records = Records(subsets[args.subset], skipped=records.skipped, subset=args.subset)
    description = description_of(model, args.model, fill=False)
    task = task_for_model(description)  # the task that trained it, with its options
    records = task.prepare_records(records)
    records = _without_seen(records, description, args.include_seen)
    classes = tuple(args.classes.split(",")) if args.classes else \
        description.class_names or task.class_names(records)
    result = task.evaluate(model, records, Path(args.out), classes,
                           batch_size=args.batch_size, resamples=args.resamples)
    headline = task.summary(result)
    _print_headline(headline["metrics"], headline.get("confidence_intervals", {}),
                    task.reference())
    print(f"metrics.json, plots and report.md written to {args.out}")
    return _finish_cohort(list(result["skipped"]), Path(args.out) / "skipped.csv")


def _without_seen(records, description, include_seen: bool):
    """`records` without the images the model was trained or validated on, each listed as
    skipped (`data.seen.leave_out_seen`); all of them with `include_seen`. Says which."""
    from mammo_keras.data.seen import leave_out_seen

    fresh, overlap = leave_out_seen(records, (description.provenance or {}).get("seen") or ())
    if not overlap:
        return records
    print(f"{len(overlap)} of the {len(records)} images were in the model's training or "
          f"validation data (e.g. {overlap[0].path}): "
          + ("evaluated anyway (--include-seen)" if include_seen else
             "left out; --include-seen evaluates them"))
    if include_seen:
        return records
    if not fresh:
        raise UserError(f"every one of the {len(records)} images was in the model's training "
                        "or validation data: there is nothing held out to evaluate "
                        "(--include-seen evaluates them anyway)")
    return fresh


def _cmd_predict(args: argparse.Namespace) -> int:
    from mammo_keras.export import load_predictor
    from mammo_keras.predict import predict_files, predict_masks, write_predictions

    classes = args.classes.split(",") if args.classes else None
    predictor = load_predictor(args.model)
    has_masks = "mask" in (predictor.description.outputs or {}).values()
    if args.masks and not has_masks:
        raise UserError(f"{args.model}: --masks needs a model with a mask output; this one "
                        "gives class probabilities only")
    if args.masks:
        if classes:
            raise UserError("--classes and --masks: a segmentation model names its own classes")
        rows, skipped = predict_masks(predictor, args.inputs, args.masks,
                                      threshold=args.mask_threshold,
                                      dicom_seg=not args.no_dicom_seg,
                                      progress=_progress("predicting", 0))
    else:
        rows, skipped = predict_files(predictor, args.inputs, class_names=classes,
                                      batch_size=args.batch_size,
                                      progress=_progress("predicting", 0))
    if not rows:
        raise no_images(", ".join(args.inputs), skipped)
    write_predictions(args.out, rows)
    print(f"{len(rows)} images predicted, written to {args.out}")
    _print_competence(predictor.description, rows)
    if args.masks:
        seg = sum(1 for row in rows if row["mask_dicom"])
        print(f"masks in {args.masks}: {len(rows)} PNG, {seg} DICOM SEG")
    elif has_masks:
        print("the model also segments lesions: add --masks DIR to write its masks")
    out = Path(args.out)
    return _finish_cohort(list(skipped), out.with_name(f"{out.stem}.skipped.csv"))


def _print_competence(description, rows: list[dict]) -> None:
    """The model's training data, and how many answers carry a note (the "note" column)."""
    from mammo_keras.evaluation.competence import model_note, trained_on

    noted = sum(1 for row in rows if row.get("note"))
    note = model_note(description)
    if note or noted:
        print(f"note: trained on {trained_on(description)}"
              + (f"; {note}" if note else "")
              + (f"; {noted} of {len(rows)} answers carry a note (the 'note' column)"
                 if noted else ""))


def _print_done(summary: dict, out: str) -> None:
    print(f"best epoch {summary['best_epoch']} of {summary['epochs_run']} "
          f"({summary['train_seconds']:.0f} s of training); on the {summary['evaluated_on']} "
          f"subset ({summary['images'][summary['evaluated_on']]} images):")
    _print_headline(summary["metrics"], summary.get("confidence_intervals", {}),
                    summary["task"], indent="  ")
    print(f"model.keras, metrics.json, report.md and plots in {out}")
    for error in summary["skipped"]:
        print(f"skipped {error}")
    for warning in summary.get("warnings", ()):
        print(f"warning: {warning}")


def _cmd_train(args: argparse.Namespace) -> int:
    from mammo_keras.training.config import load_config

    overrides = [*(args.set or ()), *([f"training.distribute={args.distribute}"]
                                       if args.distribute else [])]
    config = load_config(args.config, overrides)  # checked before TensorFlow is loaded
    if config["grid"]:
        raise UserError(f"{args.config} has a grid; run it with 'mammo-keras run'")
    from mammo_keras.training.trainer import train

    summary = train(config, args.out, resume=args.resume, progress=_progress("phantoms", 0))
    if "worker" in summary:  # a worker of a cluster: the chief reports the run
        print(f"worker {summary['worker']} of {summary['workers']}: {summary['epochs_run']} "
              f"epochs trained; the chief writes the model and the report into {args.out}")
        return 0
    _print_done(summary, args.out)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mammo_keras.training.config import load_config

    config = load_config(args.config, args.set or ())  # checked before TensorFlow is loaded
    from mammo_keras.training.experiment import run_experiment

    result = run_experiment(config, args.out)
    if not config["grid"] and result["rows"]:
        from mammo_keras.training import read_done

        _print_done(read_done(args.out), args.out)
    elif result["rows"]:
        print((Path(args.out) / "summary.md").read_text())
    for name, error in result["failed"].items():
        print(f"failed {name}: {error}")
    return 1 if result["failed"] else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from mammo_keras.export import export_model

    result = export_model(args.model, args.out, args.format, args.quantize,
                          calibration_data=args.calibration_data, samples=args.samples,
                          version=args.version)
    for artefact, meta in result.items():
        parity = meta["parity"]
        auc = parity.get("roc_auc_macro_change")
        print(f"{artefact}: {meta['format']} ({meta['quantization']}), parity on "
              f"{parity['images']} images ({parity['sample']}): max |dp| "
              f"{parity['max_abs_difference']:.1e}, top-1 agreement "
              f"{parity['top1_agreement']:.3f}"
              + (f", macro AUC change {auc:+.4f}" if auc is not None else ""))
    return 0


def _cmd_morph(args: argparse.Namespace) -> int:
    from mammo_keras import load_model
    from mammo_keras.atomic import save_model_atomically
    from mammo_keras.morph.check import function_difference
    from mammo_keras.training.stage_transition import apply_morphs, resolve_morphs

    from mammo_keras.yaml_files import read_yaml_text

    steps = resolve_morphs([read_yaml_text(text, f"morph --step {text[:40]!r}")
                            for text in args.step], "morph --step")
    if any(step["operation"] == "to_resolution" for step in steps):
        raise UserError("morph: use --to-resolution SIZE for to_resolution, not --step")
    if args.to_resolution:
        steps.append({"operation": "to_resolution", "front_width": args.front_width,
                      "front_depth": args.front_depth})
    if not steps:
        raise UserError("morph: name --to-resolution SIZE or at least one --step")
    original = load_model(args.model)
    morphed = apply_morphs(original, steps, args.to_resolution)
    factor = 1
    if args.to_resolution:
        side = original.inputs[0].shape[1]
        factor = args.to_resolution // side if side else 1
    difference = function_difference(original, morphed, factor=factor)
    save_model_atomically(morphed, args.out)
    print(f"{args.out}: {', '.join(step['operation'] for step in steps)}; "
          f"{original.count_params():,} -> {morphed.count_params():,} parameters; input "
          f"{tuple(morphed.inputs[0].shape[1:])}; largest output difference from "
          f"{args.model} on 4 random images{' (area-downsampled)' if factor > 1 else ''}: "
          f"{difference:.1e}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from mammo_keras.atomic import save_model_atomically
    from mammo_keras.convert import open_clip_to_keras
    from mammo_keras.models.clip import clip_config_of

    model = open_clip_to_keras(args.folder)
    save_model_atomically(model, args.out)
    config = clip_config_of(model)
    print(f"{args.out}: {model.name}, {model.count_params():,} parameters (image "
          f"{config.image_size} px, patch {config.patch_size}, {config.vision_layers} layers; "
          f"text {config.text_layers} layers, context {config.context_length}; joint "
          f"{config.embed_dim}-d, logit scale {config.logit_scale:.3f})")
    return 0


def _cmd_clip_train(args: argparse.Namespace) -> int:
    import numpy as np

    from mammo_keras.atomic import save_model_atomically, write_csv_atomically
    from mammo_keras.data import DataReport, Record, load_records, write_synthetic
    from mammo_keras.training.contrastive import (phantom_report, read_pairs,
                                                  train_contrastive)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.pairs:
        pairs = read_pairs(args.pairs)
        records = [Record(path=path, label=None, density=None, patient_id=None,
                          laterality=None, view=None, source="pairs") for path, _ in pairs]
        reports = [text for _, text in pairs]
    else:
        records = load_records("synthetic", write_synthetic(out / "phantoms", args.phantoms,
                                                            size=256, seed=args.seed))
        rng = np.random.default_rng(args.seed)
        reports = [phantom_report(record, rng) for record in records]
    report = DataReport()
    clip, history = train_contrastive(records, reports, image_size=args.image_size,
                                      epochs=args.epochs, batch_size=args.batch_size,
                                      learning_rate=args.learning_rate, seed=args.seed,
                                      report=report, verbose=2)
    save_model_atomically(clip, out / "clip.keras")
    write_csv_atomically(out / "history.csv", history)
    for error in report.skipped:
        print(f"skipped {error}", file=sys.stderr)
    print(f"{out / 'clip.keras'}: trained on {len(records) - len(report.skipped)} pairs, "
          f"loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}; classify by prompts "
          f"with `mammo-keras clip zero-shot {out / 'clip.keras'} --out zero_shot.keras`")
    return 0


def _cmd_clip_zero_shot(args: argparse.Namespace) -> int:
    import json

    from mammo_keras.atomic import save_model_atomically
    from mammo_keras.models.zero_shot import build_zero_shot

    prompts = args.prompts
    if Path(prompts).suffix.lower() in (".json", ".yaml", ".yml"):
        from mammo_keras.yaml_files import read_yaml

        prompts = read_yaml(prompts) if not prompts.endswith(".json") else json.loads(
            Path(prompts).read_text())
    model = build_zero_shot(args.clip, prompts, preprocessing=args.preprocessing,
                            input_shape=(args.image_size, args.image_size, 1), task=args.task)
    save_model_atomically(model, args.out)
    from mammo_keras.models import description_of

    print(f"{args.out}: zero-shot {args.task} classifier over "
          f"{list(description_of(model).class_names)} at {args.image_size} px")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from mammo_keras.explain import explain_files
    from mammo_keras.models import description_of, load_model

    model = load_model(args.model)
    description = description_of(model, args.model)
    names = args.classes.split(",") if args.classes else description.class_names
    rows, skipped = explain_files(model, args.inputs, args.out, names, method=args.method,
                                  layer=args.layer, target_class=getattr(args, "class"),
                                  preprocessing=description.preprocessing,
                                  progress=_progress("explaining", 0))
    if not rows:
        raise no_images(", ".join(args.inputs), skipped)
    print(f"{len(rows)} heat-maps (overlays, raw maps, explanations.csv) written to {args.out}")
    _print_competence(description, rows)
    return _finish_cohort(list(skipped), Path(args.out) / "skipped.csv")


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from mammo_keras.dashboard.launch import serve
    from mammo_keras.dashboard.settings import DashboardSettings

    settings = DashboardSettings(Path(args.model) if args.model else None,
                                 Path(args.results) if args.results else None,
                                 args.max_upload_mb)
    return serve(settings, port=args.port, address=args.address)


def _add_dashboard_command(commands) -> None:
    from mammo_keras.dashboard.settings import DEFAULT_MAX_UPLOAD_MB

    dashboard = commands.add_parser(
        "dashboard", help="the interactive dashboard (single case, cohort, model card)",
        description="Serve the Streamlit dashboard: upload a mammogram (DICOM, PNG, PGM, JPEG) "
                    "for probabilities, a decision threshold and a Grad-CAM overlay; browse the "
                    "false negatives / positives of an evaluated run; read the model card; "
                    "download a case report. Without --model it uses ./runs/quickstart, else "
                    "trains a demo model on synthetic phantoms on first use. Needs the "
                    "'dashboard' extra.")
    dashboard.add_argument("--model", help="a .keras file (heat-maps need it), SavedModel or "
                                           ".tflite (default: the demo model)")
    dashboard.add_argument("--results", help="an evaluated run folder for the cohort page "
                                             "(default: the model's own run folder)")
    dashboard.add_argument("--port", type=_positive_int, default=8501, help="port (8501)")
    dashboard.add_argument("--address", default="localhost",
                           help="address to listen on (localhost; 0.0.0.0 for the network)")
    dashboard.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                           help=f"largest upload accepted, in MB ({DEFAULT_MAX_UPLOAD_MB})")
    dashboard.set_defaults(handler=_cmd_dashboard)


def _cmd_bench(args: argparse.Namespace) -> int:
    from mammo_keras.atomic import write_json_atomically, write_text_atomically
    from mammo_keras.bench import markdown_table, plan, run
    from mammo_keras.bench.suite import print_progress
    from mammo_keras.catalogue import BACKBONE_NAMES

    specs = plan(args.model or sorted(BACKBONE_NAMES), args.head or ["gagm_se"], [args.mode],
                 args.image_size, args.batch_size, args.backends or ["tensorflow"], args.steps,
                 args.repeats, references=not args.no_references)

    rows = run(specs, progress=print_progress)
    table = markdown_table(rows)
    print(table)
    if args.json:
        write_json_atomically(args.json, rows)
    if args.markdown:
        write_text_atomically(args.markdown, table)
    return 1 if any(row.get("error") for row in rows) else 0


def _image_size(text: str):
    """A side ("224") or "HxW" ("512x384"), each a positive integer."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 224 or 512x384")
    return int(parts[0]) if len(parts) == 1 else f"{int(parts[0])}x{int(parts[1])}"


def _add_bench_command(commands) -> None:
    from mammo_keras.bench.runner import MODES
    from mammo_keras.catalogue import BENCH_MODELS, HEADS

    bench = commands.add_parser(
        "bench", help="throughput and memory against keras.applications, PyTorch and matmul",
        description="Measure training-step or inference throughput (images/s) and peak memory "
                    "of the classifiers, each row in its own process, with references from the "
                    "same run: the naive keras.applications route, the same architecture in "
                    "plain PyTorch (when torch is installed) and the dense matmul ceiling. "
                    "Prints a Markdown table of ratios; medians of --repeats runs.")
    bench.add_argument("--model", action="append", choices=BENCH_MODELS,
                       help="backbone or hds_unet (repeatable; default: every backbone)")
    bench.add_argument("--head", action="append", choices=HEADS,
                       help="head (repeatable; default: gagm_se)")
    bench.add_argument("--mode", choices=MODES, default="train", help="what to time (train)")
    bench.add_argument("--image-size", type=_image_size, default=224,
                       help="input px (224), or HxW such as 512x384 (the HDS crop)")
    bench.add_argument("--batch-size", type=_positive_int, default=16, help="batch (16)")
    bench.add_argument("--backends", action="append", choices=BACKENDS,
                       help="Keras backend of mammo-keras' rows (repeatable; tensorflow)")
    bench.add_argument("--steps", type=_positive_int, default=3, help="steps per run (3)")
    bench.add_argument("--repeats", type=_positive_int, default=3, help="runs; median (3)")
    bench.add_argument("--no-references", action="store_true",
                       help="skip the keras.applications, PyTorch and matmul rows")
    bench.add_argument("--json", help="write the rows as a JSON list to this file")
    bench.add_argument("--markdown", help="write the table to this Markdown file")
    bench.set_defaults(handler=_cmd_bench, model=None, head=None, backends=None)


def _add_explain_command(commands) -> None:
    from mammo_keras.explain import METHODS

    explain = commands.add_parser(
        "explain", help="Grad-CAM heat-maps on the original mammograms",
        description="Grad-CAM / Grad-CAM++ of a .keras classifier for image files and "
                    "folders, mapped back onto the uncropped mammogram: overlays, raw 16-bit "
                    "maps and explanations.csv.")
    explain.add_argument("model", help="a .keras model file")
    explain.add_argument("inputs", nargs="*", help="image files or folders")
    explain.add_argument("--data", dest="data_option", action="append", metavar="INPUT",
                         help="the same as INPUTS (either form; repeatable)")
    explain.add_argument("--out", required=True, help="output folder")
    explain.add_argument("--method", choices=METHODS, default="gradcam")
    explain.add_argument("--layer", help="feature-map layer (default: the backbone's last)")
    explain.add_argument("--class", help="class to explain (default: the predicted one)")
    explain.add_argument("--classes", help="class names, comma-separated (default: from the "
                                           "run folder of MODEL)")
    explain.set_defaults(handler=_cmd_explain)


def _add_export_command(commands) -> None:
    from mammo_keras.export import FORMATS, QUANTIZATIONS

    export = commands.add_parser(
        "export", help="SavedModel (TF Serving) and TFLite export, checked for parity",
        description="Export a .keras classifier as a SavedModel in TF Serving's layout "
                    "(signatures for raw images, PNG bytes and preprocessed images) and / or "
                    "TFLite, with a metadata JSON beside each. The exported model is run "
                    "against the Keras model on a sample; a parity failure is an error.")
    export.add_argument("model", help="a .keras model file")
    export.add_argument("--format", choices=FORMATS, default="all")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                        help="TFLite quantization (none)")
    export.add_argument("--calibration-data", help="images (a dataset folder or archive) for "
                        "int8 calibration and the parity sample; default: the training split "
                        "recorded beside the model, else synthetic phantoms")
    export.add_argument("--samples", type=_positive_int, default=32,
                        help="images in the parity / calibration sample (32)")
    export.add_argument("--version", type=_positive_int, default=1,
                        help="SavedModel version folder (1)")
    export.set_defaults(handler=_cmd_export)


def _add_morph_command(commands) -> None:
    morph = commands.add_parser(
        "morph", help="function-preserving morphs of a .keras model (MorphHR)",
        description="Apply function-preserving transformations (mammo_keras.morph) to a saved "
                    "model and save the result; the morphed model is checked against the "
                    "original on random images and the largest output difference printed.")
    morph.add_argument("model", help="a .keras model file")
    morph.add_argument("--out", required=True, help="the morphed .keras file")
    morph.add_argument("--to-resolution", type=_positive_int, metavar="SIZE",
                       help="a front for SIZE x SIZE images (an integer multiple of the input)")
    morph.add_argument("--front-width", type=_positive_int, default=8,
                       help="channels of the front's high-resolution layers (8)")
    morph.add_argument("--front-depth", type=int, default=1,
                       help="high-resolution layers in the front (1)")
    morph.add_argument("--step", action="append", default=[], metavar="YAML",
                       help="one more morph, e.g. '{operation: widen, layer: "
                            "baseline_cnn_stage2_block1_conv, width: 96}' (repeatable; "
                            "applied before --to-resolution)")
    morph.set_defaults(handler=_cmd_morph)


def _add_convert_command(commands) -> None:
    convert = commands.add_parser(
        "convert", help="convert published checkpoints to .keras models",
        description="Convert a downloaded checkpoint folder to a .keras model.")
    formats = convert.add_subparsers(dest="source", metavar="SOURCE", required=True)
    clip = formats.add_parser(
        "open_clip", help="an open_clip BiomedCLIP-style folder -> a .keras CLIP model",
        description="Convert the folder of an open_clip model with a timm ViT image tower "
                    "and a BERT text tower (BiomedCLIP: open_clip_config.json, "
                    "open_clip_pytorch_model.bin or open_clip_model.safetensors, vocab.txt) "
                    "to a .keras model holding its weights, logit scale and tokenizer.")
    clip.add_argument("folder", help="the downloaded folder")
    clip.add_argument("--out", required=True, help="the .keras file to write")
    clip.set_defaults(handler=_cmd_convert)


def _add_clip_commands(commands) -> None:
    clip = commands.add_parser(
        "clip", help="vision-language models: contrastive training, zero-shot classifiers",
        description="Train a CLIP model of BiomedCLIP's design on image / report pairs, or "
                    "make a zero-shot classifier (image -> class probabilities by prompts) "
                    "from a CLIP .keras file (`mammo-keras convert open_clip`).")
    actions = clip.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="contrastive training on image / report pairs")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", help="CSV with columns path (image) and report (text)")
    source.add_argument("--phantoms", type=_positive_int,
                        help="train on this many generated phantoms and their reports")
    train.add_argument("--out", required=True, help="output folder (clip.keras, history.csv)")
    train.add_argument("--epochs", type=_positive_int, default=40)
    train.add_argument("--image-size", type=_positive_int, default=64)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_cmd_clip_train)
    zero_shot = actions.add_parser("zero-shot", help="a zero-shot classifier from a CLIP model")
    zero_shot.add_argument("clip", help="a CLIP .keras file")
    zero_shot.add_argument("--prompts", default="paper",
                           help="a prompt set (paper, birads, mammo_clip, mama) or a YAML / "
                                "JSON file of {class: [prompts]} (default paper)")
    zero_shot.add_argument("--preprocessing", choices=("clip", "squash"), default="clip",
                           help="clip: resize, crop, CLIP mean / std; squash: the authors' "
                                "resize without normalisation")
    zero_shot.add_argument("--image-size", type=_positive_int, default=224)
    zero_shot.add_argument("--task", default="density")
    zero_shot.add_argument("--out", required=True, help="the .keras file to write")
    zero_shot.set_defaults(handler=_cmd_clip_zero_shot)


def _add_training_commands(commands) -> None:
    overrides = {"action": "append", "metavar": "KEY=VALUE",
                 "help": "override a config value, e.g. --set training.epochs=3 (repeatable)"}
    backend = {"choices": BACKENDS,
               "help": "Keras backend to train on (default: KERAS_BACKEND, else tensorflow); "
                       "the saved .keras model loads on every backend"}
    train = commands.add_parser(
        "train", help="train one model from a YAML config",
        description="Train the classifier a config describes (AdamW, warm-up + cosine decay, "
                    "label smoothing, class weights or balanced sampling, optional FSL, "
                    "early stopping, atomic checkpoints), then evaluate it.")
    train.add_argument("--config", required=True, help="experiment YAML")
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out from its last checkpoint")
    train.add_argument("--distribute", choices=("none", "mirrored", "multi_worker"),
                       help="tf.distribute strategy (training.distribute): mirrored over this "
                            "machine's GPUs, or multi_worker over the cluster TF_CONFIG names; "
                            "training.batch_size is then the global batch")
    train.set_defaults(handler=_cmd_train)
    run = commands.add_parser(
        "run", help="run an experiment: every cell of a config's grid, then the tables",
        description="Train and evaluate every cell of the config's grid (finished cells are "
                    "skipped, interrupted ones resume) and write results.csv, summary.csv, "
                    "summary.md and summary.png (mean ± std over folds / seeds).")
    run.add_argument("config", help="experiment YAML, e.g. experiments/quickstart.yaml")
    run.add_argument("--out", required=True, help="output folder")
    run.set_defaults(handler=_cmd_run)
    for parser in (train, run):
        parser.add_argument("--set", **overrides)
        parser.add_argument("--backend", **backend)


def _add_evaluate_command(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="metrics, plots and a report for a model on a dataset",
        description="Evaluate a saved .keras classifier: accuracy, balanced accuracy, F1, "
                    "per-class metrics, ROC / PR AUC, calibration, 95 % bootstrap intervals "
                    "(by patient), embedding compactness; writes metrics.json, plots, report.md.")
    evaluate.add_argument("model", help="a .keras model file")
    evaluate.add_argument("data", nargs="?", help="dataset path or name")
    evaluate.add_argument("--data", dest="data_option", metavar="DATA",
                          help="the same as DATA (either form)")
    evaluate.add_argument("--root", help="where the dataset is, when --data is a name")
    evaluate.add_argument("--split", help="split manifest; evaluate one of its subsets")
    evaluate.add_argument("--subset", default="test", help="subset of --split (test)")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--classes", help="class names, comma-separated (default: from the "
                                            "run folder of MODEL, else normal,benign,malignant)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=16)
    evaluate.add_argument("--resamples", type=int, default=1000,
                          help="bootstrap resamples, 0 for none (1000)")
    evaluate.add_argument("--include-seen", action="store_true",
                          help="also evaluate images the model was trained or validated on "
                               "(left out by default, and listed)")
    evaluate.set_defaults(handler=_cmd_evaluate)
    predict = commands.add_parser(
        "predict", help="class probabilities for image files and folders",
        description="Predict with a saved .keras classifier; files go through the training "
                    "preprocessing. Unreadable files are listed, not fatal.")
    predict.add_argument("model", help="a .keras file, a SavedModel folder or a .tflite file")
    predict.add_argument("inputs", nargs="*", help="image files or folders (searched recursively)")
    predict.add_argument("--data", dest="data_option", action="append", metavar="INPUT",
                         help="the same as INPUTS (either form; repeatable)")
    predict.add_argument("--out", required=True, help="FILE.csv or FILE.json")
    predict.add_argument("--classes", help="class names, comma-separated (default: from the "
                                           "run folder of MODEL, else normal,benign,malignant)")
    predict.add_argument("--batch-size", type=_positive_int, default=16)
    predict.add_argument("--masks", metavar="DIR",
                         help="for a model with a mask output (HDS): write each image's lesion "
                              "mask into DIR as <name>_mask.png at the image's own size, and "
                              "as <name>_seg.dcm (DICOM SEG) for DICOM sources")
    predict.add_argument("--mask-threshold", type=float, default=0.5,
                         help="lesion probability above which a pixel is in the mask (0.5)")
    predict.add_argument("--no-dicom-seg", action="store_true",
                         help="with --masks: PNG masks only")
    predict.set_defaults(handler=_cmd_predict)


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a dataset path (folder or archive) or name (mias, "
                                        "cbis_ddsm, inbreast, kaggle_merged, synthetic)")
    parser.add_argument("--root", help="where the dataset is, when DATASET is a name")


def _add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                        help=f"near-duplicate distance in bits of 256, at most {MAX_THRESHOLD} "
                             f"({DEFAULT_THRESHOLD})")


def _add_data_commands(commands) -> None:
    data = commands.add_parser("data", help="synth | patches | inspect | crops | split | audit",
                               description="Write synthetic data, inspect a dataset, split it.")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = actions.add_parser("synth", help="write synthetic mammography phantoms",
                               description="Write synthetic phantoms (with lesion masks) in an "
                                           "on-disk layout that load_records reads back.")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--count", type=_positive_int, default=200, help="images (200)")
    synth.add_argument("--size", type=_phantom_size, default=512,
                       help=f"image height in px, {MIN_SIZE}-{MAX_SIZE} (512)")
    synth.add_argument("--format", choices=["dicom", "mias", "folder", "cbis", "inbreast"],
                       default="dicom",
                       help="dicom (+ synthetic.csv), mias (PGM + Info.txt), folder (class "
                            "folders, the Kaggle layout), cbis (CBIS-DDSM CSVs + DICOM tree) or "
                            "inbreast (INbreast.csv + AllDICOMs + AllXML); default dicom")
    synth.add_argument("--seed", type=int, default=0, help="random seed (0)")
    synth.add_argument("--contrast", type=float, default=DEFAULT_CONTRAST,
                       help=f"lesion contrast ({DEFAULT_CONTRAST}); lower is harder")
    synth.add_argument("--lesion-scale", type=float, default=DEFAULT_LESION_SCALE,
                       help=f"lesion size factor ({DEFAULT_LESION_SCALE})")
    synth.set_defaults(handler=_cmd_data_synth)
    patches = actions.add_parser(
        "patches", help="lesion and normal-tissue patches at a stated mm scale",
        description="Cut lesion-centred patches (MIAS circles, CBIS-DDSM / INbreast / phantom "
                    "outlines) and normal-tissue patches (inside the breast of normal films) "
                    "at a fixed physical scale, optionally with pre-augmented copies (the "
                    "Kaggle set's kind), into class folders with manifest.csv (patient, film, "
                    "lesion, scale, augmentation). Exit status 3 when some films or lesions "
                    "gave no patch (listed).")
    _add_dataset_arguments(patches)
    patches.add_argument("--out", required=True, help="output folder")
    patches.add_argument("--size", type=_positive_int, default=128, help="patch side, px (128)")
    patches.add_argument("--field-mm", type=float, default=51.2,
                         help="side of the tissue square a patch shows, mm (51.2)")
    patches.add_argument("--kinds", choices=["all", "masses"], default="all",
                         help="every annotated lesion (default) or masses only")
    patches.add_argument("--normals-per-film", type=int, default=1,
                         help="normal-tissue patches per normal film (1)")
    patches.add_argument("--min-breast-share", type=float, default=0.95,
                         help="a normal patch lies at least this much inside the breast (0.95)")
    patches.add_argument("--copies", type=int, default=0,
                         help="pre-augmented copies per patch: rotation, flip, zoom, CLAHE (0)")
    patches.add_argument("--film-spacing-mm", type=float,
                         help="mm per px of films that do not state it (PNG exports); "
                              "without it such films are refused")
    patches.add_argument("--seed", type=int, default=0, help="random seed (0)")
    patches.set_defaults(handler=_cmd_data_patches)
    inspect = actions.add_parser("inspect", help="counts per class, density, source, view",
                                 description="Summarise a dataset and list what was skipped.")
    _add_dataset_arguments(inspect)
    inspect.set_defaults(handler=_cmd_data_inspect)
    crops = actions.add_parser(
        "crops", help="contact sheet of the breast crop on your own files",
        description="Draw each file as read with its crop box, beside the model input that "
                    "preprocessing makes of it: check the crop on a site's own mammograms.")
    crops.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    crops.add_argument("--out", required=True, help="PNG to write")
    crops.add_argument("--size", type=_positive_int, default=224, help="model input size (224)")
    crops.add_argument("--window", action="store_true", help="show the windowed input")
    crops.add_argument("--columns", type=_positive_int, default=4, help="files per row (4)")
    crops.add_argument("--max", type=_positive_int, default=48, help="at most this many files")
    crops.set_defaults(handler=_cmd_data_crops)
    split = actions.add_parser("split", help="patient-grouped stratified split or k folds",
                               description="Split a dataset by patient, stratified, and write "
                                           "the manifest (path, patient_id, label, split).")
    _add_dataset_arguments(split)
    split.add_argument("--out", required=True, help="manifest CSV to write")
    split.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15),
                       metavar=("TRAIN", "VAL", "TEST"), help="shares (0.7 0.15 0.15)")
    split.add_argument("--folds", type=_positive_int, help="k folds instead of train/val/test")
    split.add_argument("--seed", type=int, default=0, help="random seed (0)")
    split.add_argument("--stratify", choices=["label", "density", "none"], default="label",
                       help="stratify by the patient's worst label (default), density, or not")
    split.add_argument("--group-duplicates", action="store_true",
                       help="also keep near-duplicate images together (pre-augmented sets)")
    _add_threshold_argument(split)
    split.set_defaults(handler=_cmd_data_split)
    audit = actions.add_parser(
        "audit", help="near-duplicate images across the splits of a manifest",
        description="Find near-duplicate images (perceptual hash that survives flips and "
                    "90-degree rotations) that sit in different splits. Exit status 1 when "
                    "any are found.")
    _add_dataset_arguments(audit)
    audit.add_argument("--split", required=True, help="split manifest (from `data split`)")
    _add_threshold_argument(audit)
    audit.add_argument("--out", help="write every pair to this CSV")
    audit.add_argument("--show", type=int, default=10, help="pairs to print (10)")
    audit.set_defaults(handler=_cmd_data_audit)


def _on_backend(backend: str, argv: list[str]) -> int:
    """Run this command on another Keras backend: in a child process, since Keras fixes its
    backend at import."""
    import keras

    if keras.backend.backend() == backend:
        return _dispatch(build_parser().parse_args(argv))
    environment = {**os.environ, "KERAS_BACKEND": backend}
    return subprocess.call([sys.executable, "-m", "mammo_keras.cli", *argv], env=environment)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mammo-keras",
        description="Keras 3 / TensorFlow reference implementations of mammography papers: "
                    "GAGM / SEVector / FSL classifiers, breast density, MorphHR, HDS U-Net.")
    parser.add_argument("--version", action="version", version=_version_text())
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and C++ log lines (hidden by default)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = commands.add_parser("models", help="list backbones and heads (and their sizes)",
                                 description="List the backbones and heads of build_classifier.")
    models.add_argument("--count-params", action="store_true",
                        help="build every backbone x head and print its parameter count")
    models.add_argument("--image-size", type=_positive_int, default=224, help="input size in px (224)")
    models.add_argument("--num-classes", type=_positive_int, default=3, help="number of classes (3)")
    models.set_defaults(handler=_cmd_models)

    _add_data_commands(commands)
    _add_evaluate_command(commands)
    _add_training_commands(commands)
    _add_export_command(commands)
    _add_morph_command(commands)
    _add_convert_command(commands)
    _add_clip_commands(commands)
    _add_explain_command(commands)
    _add_dashboard_command(commands)
    _add_bench_command(commands)
    trust = {"action": "store_true",
             "help": "run code that a config or a model file names outside mammo_keras (a "
                     "model.builder or task 'package.module:name'); off by default, as "
                     f"Hugging Face's trust_remote_code (or set {TRUST_VARIABLE}=1)"}
    parser.add_argument("--trust-code", **trust)
    for command in commands.choices.values():  # also accepted after the command's name
        command.add_argument("--trust-code", **trust, default=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mammo-keras` console script; returns the exit status."""
    from mammo_keras.tensorflow_setup import prepare_tensorflow

    users = prepare_tensorflow()  # before anything imports TensorFlow
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _tensorflow_logs(args.verbose, users["TF_CPP_MIN_LOG_LEVEL"])
    with trusting_code(args.trust_code):
        if getattr(args, "backend", None):
            try:  # before the backend is chosen, which imports Keras
                _check_arguments(args)
            except UserError as error:
                print(f"mammo-keras {args.command}: error: {error}", file=sys.stderr)
                return 2
            return _on_backend(args.backend, list(sys.argv[1:] if argv is None else argv))
        return _dispatch(args)


def _tensorflow_logs(verbose: bool, user_level: str | None) -> None:
    """TensorFlow's C++ log lines off the terminal, unless asked for (`--verbose`) or the
    user set TF_CPP_MIN_LOG_LEVEL (`user_level`, None when not): its start-up lines, and the runtime ones that are noise
    to a user of the command line (TF 2.21 logs "NodeDef mentions attribute
    use_unbounded_threadpool", "oneDNN supports DT_BOOL only ... AVX-512" as errors, and
    warns of a partly read cache after every complete file cache it writes); a C++ error
    that matters reaches the user as the Python exception it raises."""
    from mammo_keras.quiet_tensorflow import silence_tensorflow_start

    if user_level is not None:
        return
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        silence_tensorflow_start()


# What each command's path arguments must be, checked before TensorFlow is imported so that a
# mistake is answered at once: argument -> (kind, what it is called). Kinds: "file", "folder",
# "model" (a .keras file), "served" (a .keras file, SavedModel folder or .tflite file).
_PATH_ARGUMENTS = {
    "evaluate": {"model": ("model", "model file")},
    "predict": {"model": ("served", "model")},
    "explain": {"model": ("model", "model file")},
    "export": {"model": ("model", "model file")},
    "morph": {"model": ("model", "model file")},
    "train": {"config": ("file", "config file")},
    "run": {"config": ("file", "config file")},
    "dashboard": {"model": ("served", "model")},
    "convert": {"folder": ("folder", "checkpoint folder")},
    "clip": {"clip": ("model", "CLIP model file"), "pairs": ("file", "pairs CSV")},
}
# Suffixes an --out must end in, where the command writes one kind of file
_OUT_SUFFIXES = {"predict": (".csv", ".json")}


def _check_arguments(args: argparse.Namespace) -> None:
    """The path mistakes of `args` as one UserError, before any work (and any TensorFlow).
    The data of evaluate / predict / explain may be given positionally or as --data: the two
    forms are merged here."""
    _merge_data_forms(args)
    for name, (kind, what) in _PATH_ARGUMENTS.get(args.command, {}).items():
        value = getattr(args, name, None)
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise UserError(f"{path}: {what} not found")
        if kind in ("file", "model") and path.is_dir():
            if kind == "model":
                raise UserError(f"{path}: is a folder (a SavedModel?), not a .keras model "
                                f"file; {args.command} needs the .keras file (`predict` also "
                                "reads SavedModels)")
            raise UserError(f"{path}: is a folder; a {what} was expected")
        if kind == "folder" and not path.is_dir():
            raise UserError(f"{path}: is a file; a {what} was expected")
    suffixes = _OUT_SUFFIXES.get(args.command)
    if suffixes and Path(args.out).suffix.lower() not in suffixes:
        raise UserError(f"{args.out}: --out must end in {' or '.join(suffixes)}")


def _merge_data_forms(args: argparse.Namespace) -> None:
    if not hasattr(args, "data_option"):
        return
    option = args.data_option
    if args.command == "evaluate":
        if args.data and option:
            raise UserError(f"the data given twice ({args.data} and --data {option}); give it "
                            "once")
        args.data = args.data or option
        if not args.data:
            raise UserError("evaluate needs the data: evaluate MODEL DATA --out DIR")
    else:
        args.inputs = [*args.inputs, *(option or [])]
        if not args.inputs:
            raise UserError(f"{args.command} needs image files or folders: {args.command} "
                            "MODEL INPUTS... --out ...")
    del args.data_option


# --out names a file when it ends in one of these, else a folder
_FILE_SUFFIXES = (".csv", ".json", ".png", ".jpg", ".pdf", ".html", ".keras")


def _dispatch(args: argparse.Namespace) -> int:
    from mammo_keras.atomic import check_destination

    try:
        if getattr(args, "out", None):  # before any work: a bad destination loses nothing
            check_destination(args.out, folder=Path(args.out).suffix.lower()
                              not in _FILE_SUFFIXES)
        _check_arguments(args)
        return args.handler(args)
    except (UserError, FileNotFoundError) as error:  # ConfigError, DataError are UserErrors
        print(f"mammo-keras {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        problem = _storage_problem(error)
        if problem is None:
            raise  # a bug: its traceback
        print(f"mammo-keras {args.command}: error: {problem}", file=sys.stderr)
        return 2


# errno values of a destination that cannot take the output; the user's to fix
_STORAGE_ERRORS = {errno.ENOSPC: "no space left on the device",
                   errno.EFBIG: "file too large for the file system or the process's limit",
                   errno.EROFS: "read-only file system", errno.EDQUOT: "disk quota exceeded",
                   errno.EACCES: "permission denied"}


def _storage_problem(error: BaseException) -> str | None:
    """One line for a full, read-only or size-limited destination, raised as an OSError or
    inside TensorFlow (whose errors carry only the text); None for anything else."""
    from mammo_keras.atomic import os_error_cause

    cause = os_error_cause(error)
    if cause is not None and cause.errno in _STORAGE_ERRORS:
        where = f" {cause.filename}" if cause.filename else ""
        return f"cannot write{where}: {_STORAGE_ERRORS[cause.errno]}"
    if type(error).__module__.startswith("tensorflow"):
        text = str(error)
        for number, meaning in _STORAGE_ERRORS.items():
            if os.strerror(number) in text or meaning in text.lower():
                return f"cannot write the output: {meaning}"
    return None


if __name__ == "__main__":
    sys.exit(main())
