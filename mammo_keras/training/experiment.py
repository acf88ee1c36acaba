"""`run_experiment`: one YAML config with a grid -> one training run per cell -> results tables.

The `grid` section names axes; the cells are their Cartesian product. An axis is
either a dotted config key with a list of values, or `variants`-style: a name
with a mapping of named override sets. For example:

    grid:
      model.backbone: [baseline_cnn, convnext_tiny]
      variant:                       # named sets of overrides
        gap: {model.head: gap}
        gagm_se_fsl: {model.head: gagm_se, training.fsl_lambda: 0.05}
      data.fold: [0, 1, 2, 3, 4]     # a repeat axis: averaged over in the summary

gives 2 x 2 x 5 cells named like `convnext_tiny-gagm_se_fsl-fold3`. Each cell
trains into `out/cells/<cell>/` (a config without a grid trains into `out`
itself); finished cells are skipped on a re-run and unfinished ones resume. After
every cell, `results.csv` (one row per cell), `summary.csv` / `summary.md` (mean
+- std over the repeat axes `data.fold` and `training.seed`) and `summary.png`
are rewritten. A cell that fails is reported and the others still run.
"""

from __future__ import annotations

import copy
import itertools
import json
import traceback
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from mammo_keras.atomic import write_csv_atomically, write_text_atomically
from mammo_keras.provenance import commit_at_start
from mammo_keras.tasks import get_task_class
from mammo_keras.training.config import (ConfigError, config_hash, resolve_config, set_dotted,
                                         write_config)
from mammo_keras.training.run_end import read_done
from mammo_keras.training.run_folder import owned_run_folder
from mammo_keras.training.trainer import train

REPEAT_AXES = ("data.fold", "training.seed", "data.split_seed")
# The columns of a cell's row that are bookkeeping, not metrics to average
_ROW_FACTS = ("cell", "epochs_run", "best_epoch", "test_images", "evaluated_on", "commit",
              "warnings")
# What summary.png draws when the task names nothing (`Task.plot_metrics`)
DEFAULT_PLOT_METRICS = ("macro_f1", "roc_auc_macro", "balanced_accuracy")


def _label(key: str, value) -> str:
    text = str(value)
    return text if isinstance(value, str) else f"{key.split('.')[-1]}{text}"


def expand_grid(config: dict) -> list[tuple[str, dict, dict]]:
    """The cells of `config["grid"]`: [(cell name, {axis: label}, resolved cell config)].

    A config without a grid is one cell named "" (trained in the output folder itself).
    """
    grid = config.get("grid") or {}
    base = {key: value for key, value in config.items() if key != "grid"}
    axes = []
    for axis, values in grid.items():
        if isinstance(values, dict):
            options = [(name, dict(overrides or {})) for name, overrides in values.items()]
        elif isinstance(values, list) and values:
            options = [(_label(axis, value), {axis: value}) for value in values]
        else:
            raise ConfigError(f"grid.{axis} must be a non-empty list or a mapping of named "
                              f"overrides, got {values!r}")
        axes.append((axis, options))
    cells = []
    for combination in itertools.product(*(options for _, options in axes)):
        cell = copy.deepcopy(base)
        labels = {}
        for (axis, _), (label, overrides) in zip(axes, combination):
            labels[axis] = label
            builder = overrides.get("model.builder")
            if builder is not None and builder != cell.get("model", {}).get("builder",
                                                                            "classifier"):
                cell["model"] = {}  # the base's model keys are another builder's arguments
            for key, value in overrides.items():
                set_dotted(cell, key, value)
        name = "-".join(labels.values())
        try:
            cells.append((name, labels, resolve_config(cell)))
        except ConfigError as error:
            raise ConfigError(f"grid cell {name!r}: {error}") from None
    names = [name for name, _, _ in cells]
    if len(set(names)) != len(names):
        raise ConfigError("grid cells must have distinct names; give variants distinct names")
    return cells


def _cell_row(name: str, labels: dict, done: dict) -> dict:
    """One row of results.csv: the cell's axes, every headline number of its done.json (the
    task's `summary`: metrics, recall per class, embedding figures) and its bookkeeping."""
    row = {"cell": name, **labels}
    row.update({key: value for key, value in done["metrics"].items() if _is_number(value)})
    row.update({f"recall_{name}": value for name, value in (done.get("recall") or {}).items()})
    row.update({key: value for key, value in (done.get("embedding") or {}).items()
                if _is_number(value)})
    row.update({"epochs_run": done["epochs_run"], "best_epoch": done["best_epoch"],
                "train_seconds": done["train_seconds"],
                "test_images": done["images"].get(done["evaluated_on"]),
                "evaluated_on": done["evaluated_on"], "commit": done["commit"],
                "warnings": "; ".join(done.get("warnings", []))})
    return row


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summarise(rows: list[dict], axes: list[str]) -> list[dict]:
    """Group rows by the non-repeat axes: mean and std (ddof=1) of each metric, and n."""
    keys = [axis for axis in axes if axis not in REPEAT_AXES]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    metrics = [key for key in dict.fromkeys(key for row in rows for key in row)
               if key not in axes and key not in _ROW_FACTS]
    summary = []
    for values, members in groups.items():
        entry = dict(zip(keys, values))
        entry["n"] = len(members)
        entry["evaluated_on"] = "/".join(sorted({str(m.get("evaluated_on", "test"))
                                                  for m in members}))
        for metric in metrics:
            numbers = [m[metric] for m in members if _is_number(m.get(metric))]
            entry[f"{metric}_mean"] = float(np.mean(numbers)) if numbers else None
            entry[f"{metric}_std"] = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None
        summary.append(entry)
    return summary


def _cell_text(entry: dict, metric: str) -> str:
    mean, std = entry.get(f"{metric}_mean"), entry.get(f"{metric}_std")
    if mean is None:
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def summary_markdown(config: dict, summary: list[dict], axes: list[str], failed: dict,
                     origins: list[dict]) -> str:
    """The summary table with what produced it."""
    keys = [axis for axis in axes if axis not in REPEAT_AXES]
    data, training = config["data"], config["training"]
    repeats = [axis for axis in axes if axis in REPEAT_AXES]
    columns = get_task_class(data["task"]).report_columns
    grouping = "per-image" if data["split_by"] == "image" else "patient-grouped"
    # a grid that sets sizes or stages per cell makes the base config's figures wrong here
    grid_text = json.dumps(config.get("grid", {}))
    per_cell = bool(training.get("stages")) or any(
        key in grid_text for key in ("training.stages", "data.image_size", "training.epochs"))
    size_text = "input size set per cell" if per_cell else f"{data['image_size']} px input"
    epochs_text = "epochs set per cell (see each cell's config.yaml)" if per_cell else \
        f"{training['epochs']} epochs at most"
    lines = [f"# {config['name']}: results", "",
             f"Data: {data['dataset']} ({data['root'] or 'generated phantoms'}), task "
             f"{data['task']}, {size_text}, "
             + (f"{grouping} {data['folds']}-fold cross-validation" if data["folds"] else
                f"{grouping} split {data['split']}")
             + f"; {epochs_text}, batch {training['batch_size']}, "
             f"model {_model_text(config['model'])}.",
             f"Mean ± std over {_repeat_text(config, repeats)} (n runs per row); metrics on "
             f"{_evaluated_text(summary, config)} of each run.", "",
             "| " + " | ".join(keys + ["n", *(heading for _, heading in columns),
                                       "train s"]) + " |",
             "|" + "---|" * len(keys) + "---:|" * (len(columns) + 2)]
    for entry in summary:
        cells = [str(entry[key]) for key in keys] + [str(entry["n"])]
        cells += [_cell_text(entry, metric) for metric, _ in columns]
        seconds = entry.get("train_seconds_mean")
        cells.append("n/a" if seconds is None else f"{seconds:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"Trained by `{origin['command']}` at commit {origin['commit']}; "
                     f"{origin['hardware']}." for origin in origins]
    if failed:
        lines += ["", "Failed cells:"] + [f"- {name}: {error}" for name, error in failed.items()]
    return "\n".join(lines) + "\n"


def _evaluated_text(summary: list[dict], config: dict) -> str:
    """Which subset the metrics come from: "the held-out test subset", or a warning when
    the validation subset, which also chose the best epoch, was evaluated."""
    subsets = sorted({subset for entry in summary
                      for subset in str(entry.get("evaluated_on") or "").split("/") if subset})
    if not subsets:
        subsets = [config["evaluation"]["subset"]]
    if subsets == ["test"]:
        return "the held-out test subset"
    return (f"the {' / '.join(subsets)} subset (the validation subset also chose the best "
            "epoch: not a held-out estimate)")


def _model_text(model: dict) -> str:
    """e.g. "classifier, weights None" or "saved (runs/encoder/model.keras)"."""
    if model.get("builder", "classifier") == "classifier":
        return f"classifier, weights {model.get('weights')}"
    if model.get("builder") == "saved":
        return f"saved ({model.get('path')})"
    return str(model.get("builder"))


def _repeat_text(config: dict, repeats: list[str]) -> str:
    """e.g. "data.fold in [0, 1, 2]" for the repeat axes of the grid."""
    if not repeats:
        return "one run"
    return ", ".join(f"{axis} in {config['grid'][axis]}" for axis in repeats)


def plot_summary(summary: list[dict], axes: list[str], path: Path,
                 metrics: tuple = DEFAULT_PLOT_METRICS) -> None:
    """Bars of `metrics` (by default macro F1, macro ROC-AUC, balanced accuracy) per row of
    the summary, +- std."""
    from mammo_keras.evaluation.plots import plot_metric_bars

    keys = [axis for axis in axes if axis not in REPEAT_AXES]
    names = ["-".join(str(entry[key]) for key in keys) or "run" for entry in summary]
    series = {metric: ([entry.get(f"{metric}_mean") for entry in summary],
                       [entry.get(f"{metric}_std") for entry in summary])
              for metric in metrics}
    plot_metric_bars(names, series, path)


def run_experiment(config: dict, out: str | Path, *, verbose: int | str = "auto",
                   log: Callable[[str], None] = print) -> dict:
    """Run every cell of `config` (see the module docstring); returns {"rows", "summary", "failed"}."""
    config = resolve_config(config)
    commit_at_start()  # every cell records the code the grid started with
    out = Path(out)
    with owned_run_folder(out, "experiment"):
        write_config(out / "config.yaml", config)
        cells = expand_grid(config)
        axes = list((config.get("grid") or {}).keys())
        rows, failed, origins = [], {}, []
        for index, (name, labels, cell_config) in enumerate(cells, start=1):
            folder = out / "cells" / name if name else out
            done = read_done(folder)
            prefix = f"[{index}/{len(cells)}] {name or config['name']}"
            if done is not None and done["config_hash"] == config_hash(cell_config):
                log(f"{prefix}: finished earlier, skipped")
            else:
                log(f"{prefix}: training")
                done = _train_cell(cell_config, folder, out / "data", verbose, failed, name,
                                   prefix, log)
                keras.backend.clear_session(free_memory=True)  # the next cell starts from none
            if done is not None:
                for warning in done.get("warnings", []):
                    log(f"{prefix}: warning: {warning}")
                rows.append(_cell_row(name, labels, done))
                origin = {key: done[key] for key in ("command", "commit", "hardware")}
                if origin not in origins:
                    origins.append(origin)
            if rows:
                _write_tables(out, config, rows, axes, failed, origins)
        return {"rows": rows, "summary": summarise(rows, axes), "failed": failed}


def _train_cell(config: dict, folder: Path, data_dir: Path, verbose, failed: dict, name: str,
                prefix: str, log: Callable[[str], None]) -> dict | None:
    """Train one cell (resuming it if interrupted); a failure is logged and kept in `failed`."""
    try:
        return train(config, folder, resume=True, data_dir=data_dir, verbose=verbose)
    except Exception as error:  # noqa: BLE001 - one failed cell must not stop the grid
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        failed[name] = message
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.txt").write_text(traceback.format_exc())
        log(f"{prefix}: failed: {message} (traceback in {folder / 'error.txt'})")
        return None


def _write_tables(out: Path, config: dict, rows: list[dict], axes: list[str], failed: dict,
                  origins: list[dict]) -> None:
    summary = summarise(rows, axes)
    write_csv_atomically(out / "results.csv", rows)
    write_csv_atomically(out / "summary.csv", summary)
    write_text_atomically(out / "summary.md", summary_markdown(config, summary, axes, failed,
                                                                origins))
    task = get_task_class(config["data"]["task"])
    plot_summary(summary, axes, out / "summary.png",
                 metrics=task.plot_metrics or DEFAULT_PLOT_METRICS)
