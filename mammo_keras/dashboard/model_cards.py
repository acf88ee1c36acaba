"""The model card the dashboard shows: what the model is, what it was trained and tested on,
how well it did (with confidence intervals) and what it is not for."""

from __future__ import annotations

from pathlib import Path

from mammo_keras.export.metadata import build_metadata
from mammo_keras.export.runtime import artefact_metadata, savedmodel_version

NOT_FOR_DIAGNOSIS = ("Research software, not a medical device: not for diagnosis, screening or "
                     "any clinical decision. Outputs have not been validated on your population.")
INTENDED_USE = ("Exploring and comparing mammography classifiers on retrospective, "
                "de-identified images: research and teaching.")
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_macro")


def model_card(model_path: str | Path, model=None) -> dict:
    """Facts of a `.keras` file (from its description; `model`: the file, loaded already)
    or of an exported artefact (from the metadata inside it). Unknown facts are None.

    Returns {"model", "format", "backbone", "head", "task", "class_names",
    "training_data", "evaluated_on", "metrics": {name: (value, low, high)}, "commit"}.
    """
    path = Path(model_path)
    if path.suffix == ".keras":
        from mammo_keras.models.description import description_of
        from mammo_keras.models.loading import load_model

        model = model if model is not None else load_model(path)
        facts = build_metadata(model, description_of(model, path), str(path), "keras")
        fmt = "keras"
    else:
        facts = artefact_metadata(savedmodel_version(path) if path.is_dir() else path)
        fmt = "tflite" if path.suffix == ".tflite" else "savedmodel"
    metrics = facts.get("metrics") or {}
    intervals = metrics.get("confidence_intervals", {})
    table = {name: (metrics[name], *(intervals.get(name) or (None, None)))
             for name in HEADLINE_METRICS if metrics.get(name) is not None}
    training_data = facts.get("training_data") or {}
    return {"model": str(path), "format": fmt, "backbone": facts.get("backbone"),
            "head": facts.get("head"), "task": facts.get("task"),
            "class_names": facts.get("class_names"), "training_data": training_data,
            "evaluated_on": metrics.get("evaluated_on"), "metrics": table,
            "commit": training_data.get("commit")}


def model_card_markdown(card: dict) -> str:
    """The card as Markdown: identity, data, metrics table with 95 % CIs, use and limits."""
    data = card["training_data"]
    images = data.get("images") or {}
    lines = [f"**Model** `{Path(card['model']).name}` ({card['format']}): backbone "
             f"`{card['backbone'] or 'unknown'}`, head `{card['head'] or 'unknown'}`, task "
             f"{card['task'] or 'unknown'}, classes {', '.join(card['class_names'] or ['unknown'])}.",
             "",
             f"**Data**: {data.get('dataset', 'unknown')} ({data.get('root') or 'generated'}), "
             f"input {data.get('image_size', '?')} px; images per split: "
             + (", ".join(f"{name} {count}" for name, count in images.items()) or "unknown")
             + (f"; trained at commit `{card['commit']}`." if card["commit"] else "."),
             ""]
    if card["metrics"]:
        lines += [f"**Performance** on the {card['evaluated_on'] or 'held-out'} split "
                  "(95 % patient-bootstrap interval):", "", "| metric | value | 95 % CI |",
                  "|---|---:|---:|"]
        for name, (value, low, high) in card["metrics"].items():
            interval = f"{low:.3f} - {high:.3f}" if low is not None else "n/a"
            lines.append(f"| {name.replace('_', ' ')} | {value:.3f} | {interval} |")
    else:
        lines.append("**Performance**: no evaluation found beside the model.")
    lines += ["", f"**Intended use**: {INTENDED_USE}", "",
              "**Limitations**: trained on the data above only; a model trained on synthetic "
              "phantoms knows nothing of real mammograms. Heat-maps show where the model looked, "
              "not why a finding is present.", "", f"**Not for diagnosis.** {NOT_FOR_DIAGNOSIS}"]
    return "\n".join(lines)
