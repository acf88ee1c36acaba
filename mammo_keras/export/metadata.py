"""What travels with an exported model: classes, input, preprocessing, provenance (metadata JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import yaml

from mammo_keras import __version__

PREPROCESSING_KEYS = ("crop", "flip", "window", "equalize")
DEFAULT_PREPROCESSING = {"crop": True, "flip": True, "window": False, "equalize": False}


def run_folder_facts(model_path: str | Path) -> dict:
    """What the training run folder of a `.keras` file says (empty when it is not in one).

    Returns a dict with, where known: "class_names", "task", "preprocessing",
    "backbone", "head", "training_data", "metrics", "config", "splits".
    """
    folder = Path(model_path).parent
    facts: dict = {}
    if (folder / "config.yaml").is_file():
        config = yaml.safe_load((folder / "config.yaml").read_text())
        data = config["data"]
        facts.update(config=config, task=data["task"],
                     preprocessing={key: bool(data[key]) for key in PREPROCESSING_KEYS},
                     backbone=config["model"]["backbone"], head=config["model"]["head"],
                     training_data={"dataset": data["dataset"], "root": data["root"],
                                    "image_size": data["image_size"]})
    if (folder / "splits.csv").is_file():
        facts["splits"] = str(folder / "splits.csv")
    if (folder / "done.json").is_file():
        done = json.loads((folder / "done.json").read_text())
        facts["class_names"] = done["class_names"]
        facts["metrics"] = {"evaluated_on": done["evaluated_on"], **done["metrics"],
                            "confidence_intervals": done["confidence_intervals"]}
        facts["training_data"] = {**facts.get("training_data", {}), "images": done["images"],
                                  "commit": done["commit"]}
    return facts


def default_class_names(count: int) -> list[str]:
    """normal / benign / malignant for 3 outputs, else class0..classK-1."""
    return ["normal", "benign", "malignant"] if count == 3 else [f"class{k}" for k in range(count)]


def build_metadata(model: keras.Model, facts: dict, artefact: str, fmt: str,
                   quantize: str = "none", parity: dict | None = None) -> dict:
    """The metadata JSON of one exported artefact."""
    size = int(model.input_shape[1])
    classes = int(model.output_shape[-1])
    return {
        "artefact": artefact,
        "format": fmt,
        "quantization": quantize,
        "class_names": facts.get("class_names") or default_class_names(classes),
        "input": {"size": [size, size, 1], "dtype": "float32", "range": [0.0, 1.0],
                  "layout": "NHWC grayscale, after preprocessing"},
        "preprocessing": {**DEFAULT_PREPROCESSING, **facts.get("preprocessing", {}),
                          "function": "mammo_keras.data.preprocess"},
        "backbone": facts.get("backbone"),
        "head": facts.get("head"),
        "model_name": model.name,
        "task": facts.get("task", "malignancy"),
        "training_data": facts.get("training_data"),
        "metrics": facts.get("metrics"),
        "parity": parity,
        "mammo_keras": __version__,
        "keras": keras.__version__,
    }
