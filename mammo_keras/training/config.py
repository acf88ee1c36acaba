"""Experiment configs: one YAML file describes data, model, training, evaluation (and a grid).

A config is a nested dict; every key has a default in `DEFAULTS`, so a file names
only what it changes. Unknown keys and values of the wrong type are errors that
name the key. `--set section.key=value` overrides come on top (values parsed as
YAML, so `--set training.epochs=3` gives an int).

Example:

>>> config = resolve_config({"model": {"backbone": "convnext_tiny"}},
...                         overrides=["training.epochs=3"])
>>> config["model"]["backbone"], config["training"]["epochs"], config["model"]["head"]
('convnext_tiny', 3, 'gagm_se')
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml

from mammo_keras.atomic import write_text_atomically
from mammo_keras.catalogue import BACKBONE_NAMES, HEADS
from mammo_keras.data.synthetic import MAX_SIZE as PHANTOM_MAX_SIZE
from mammo_keras.data.synthetic import MIN_SIZE as PHANTOM_MIN_SIZE
from mammo_keras.errors import ConfigError, UserError, did_you_mean
from mammo_keras.yaml_files import read_yaml, read_yaml_text

SYNTHETIC_LATER_DEFAULTS = {"calcification_share": 0.3, "calcification_radius": None}
DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "data": {
        "dataset": "synthetic",   # a load_records name, or "folder"; see `root`
        "root": None,             # folder or archive; None: generated phantoms (synthetic)
        "synthetic": {"count": 240, "size": 256, "seed": 0, "contrast": 0.3,
                      "lesion_scale": 2.0, "calcification_share": 0.3,
                      "calcification_radius": None},   # data/synthetic.py
        "task": "malignancy",     # malignancy | density | a Task: "package.module:ClassName"
        "classes": None,          # None: normal/benign/malignant or the dataset's densities
        "image_size": 128,
        "split": [0.7, 0.15, 0.15],   # train / val / test shares, patient-grouped
        "folds": 0,               # > 1: k-fold; `fold` is the test fold, the next one val
        "fold": 0,
        "split_seed": 0,
        "split_by": "patient",    # patient | image (leaky: a patient's views on both sides)
        "group_duplicates": False,  # keep near-duplicate images together (pre-augmented sets)
        "crop": True, "flip": True, "window": False, "equalize": False,
        "train_crop": None,       # [h, w]: train a segmentation task on crops of the image,
        "crop_positive_rate": 0.5,  # centred on a lesion pixel this often (HDS "balanced")
    },
    "model": {                    # the builder's keyword arguments (models/builders.py)
        "builder": "classifier",  # these defaults are the classifier's; another builder
        "backbone": "baseline_cnn",  # takes the keys of its own signature
        "head": "gagm_se",
        "weights": None,          # None | "imagenet" | a local weights file
        "dropout": 0.3,
        "se_reduction": 16,
        "gagm_fusion": "concat",
        "bn_momentum": None,      # BatchNorm momentum of the backbone; None: its own (0.99
                                  #   for InceptionV3); 0.9 for small data from scratch
    },
    "training": {
        "scenario": "fine_tune",      # fine_tune | linear_probe | logistic_probe
                                      #   (training/probe.py: a frozen encoder's features)
        "probe_layer": None,          # the layer a probe reads; None: "embedding"
        "epochs": 12,                 # 0: evaluate the built (or loaded) model only
        "stages": [],                 # progressive resolution: [{image_size, epochs,
                                      #   learning_rate, warmup_epochs, morph}, ...] replaces
                                      #   data.image_size and training.epochs; `morph`
                                      #   (MorphHR): to_resolution, or a list of
                                      #   {operation: deepen|widen|..., arguments}
        "batch_size": 16,             # images per optimizer step
        "gradient_accumulation": 1,   # > 1: batches of batch_size / this, gradients averaged
                                      #   over this many before each step (less memory)
        "optimizer": "adamw",         # adamw | sgd (with `momentum`; HDS trains with SGD)
        "momentum": 0.9,
        "learning_rate": 1e-3,
        "weight_decay": 1e-4,
        "schedule": "cosine",         # cosine: warm-up, then cosine decay to the floor;
                                      #   plateau: constant, x plateau_factor after
                                      #   plateau_patience epochs without gain on `monitor`
        "warmup_epochs": 1.0,
        "min_learning_rate_ratio": 0.01,
        "plateau_factor": 0.5,
        "plateau_patience": 10,
        "label_smoothing": 0.1,
        "class_balance": "weights",   # none | weights | sampling
        "fsl_lambda": 0.0,            # > 0 turns the Feature Smoothing Loss on
        "fsl_centres": "ema",         # ema | batch
        "fsl_momentum": 0.9,
        "augment": True,
        "monitor": None,              # None: the task's own (`Task.monitor`)
        "patience": 0,                # early stopping after this many epochs without gain; 0: off
        "precision": "auto",          # auto (mixed_float16 on GPU) | float32 | mixed_float16 |
                                      #   float64 (numerical checks: a distributed run against
                                      #   one device, free of float32 rounding)
        "jit_compile": "auto",        # auto | true | false
        "distribute": "none",         # none | mirrored | multi_worker (TF_CONFIG): tf.distribute;
                                      #   batch_size is then the global batch (docs/distributed.md)
        "deterministic": False,
        "seed": 0,
        "tensorboard": True,
    },
    "evaluation": {
        "subset": "test",         # test | val
        "resamples": 1000,        # bootstrap resamples for the 95 % intervals; 0: none
    },
    "task_options": {},           # the task's own settings (`Task.OPTIONS`, e.g. the HDS
                                  #   loss of tasks/segmentation.py), checked by the task
    "grid": {},                   # only for `run`: axes to expand, see experiment.expand_grid
}

NUMBER = (int, float)


@dataclasses.dataclass(frozen=True)
class Rule:
    """The constraint of one config key (scikit-learn's `_parameter_constraints` is the
    model): the types it takes (None: its default's type; a float default takes ints too),
    whether null is allowed besides a null default, its choices, and its interval (low, high,
    high included; the low end is always included; a NaN is never inside). Every violation is
    one line naming the key."""

    types: tuple[type, ...] | None = None
    nullable: bool = False
    choices: tuple | None = None
    interval: tuple[float, float, bool] | None = None

    def check(self, dotted: str, value: Any, default: Any, where: str) -> None:
        if value is None:
            if default is None or self.nullable:
                return
            raise ConfigError(f"{where}{dotted} must not be null (default {default!r})")
        types = self.types
        if types is None and default is not None:
            types = NUMBER if isinstance(default, float) else (type(default),)
        if types is not None:
            name = "a number" if types == NUMBER else " or ".join(t.__name__ for t in types)
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                raise ConfigError(f"{where}{dotted} must be {name}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}{dotted} must be one of {list(self.choices)}, "
                              f"got {value!r}")
        if self.interval is not None:
            low, high, inclusive = self.interval
            inside = low <= value <= high if inclusive else low <= value < high
            if not inside:  # NaN compares false: refused here
                raise ConfigError(f"{where}{dotted} must be in [{low:g}, {high:g}"
                                  f"{']' if inclusive else ')'}, got {value!r}")


def _fraction(high_included: bool = False) -> Rule:
    return Rule(NUMBER, interval=(0.0, 1.0, high_included))


# One rule per key whose constraint is more than "the type of its default"; the others take
# their default's type. Sections (data, model, training, ...) are checked key by key; `grid`,
# `task_options` (the task's own OPTIONS) and `training.stages` have checks of their own.
RULES: dict[str, Rule] = {
    "data.root": Rule((str, Path)),
    "data.classes": Rule((list,)),
    "data.image_size": Rule((int,), interval=(1, 16384, True)),  # backbones state their minimum
    "data.split": Rule((list,)),
    "data.split_by": Rule(choices=("patient", "image")),
    "data.train_crop": Rule((list,)),
    "data.crop_positive_rate": _fraction(True),
    "data.synthetic.count": Rule((int,), interval=(1, 10_000_000, True)),
    "data.synthetic.size": Rule((int,), interval=(PHANTOM_MIN_SIZE, PHANTOM_MAX_SIZE, True)),
    "data.synthetic.contrast": Rule(NUMBER, interval=(0.0, 10.0, True)),
    "data.synthetic.lesion_scale": Rule(NUMBER, interval=(0.01, 100.0, True)),
    "data.synthetic.calcification_share": _fraction(True),
    "data.synthetic.calcification_radius": Rule(NUMBER, interval=(0.1, 1000.0, True)),
    "model.backbone": Rule(choices=BACKBONE_NAMES),
    "model.head": Rule(choices=HEADS),
    "model.weights": Rule((str,)),
    "model.bn_momentum": Rule(NUMBER),
    "model.dropout": _fraction(),
    "training.scenario": Rule(choices=("fine_tune", "linear_probe", "logistic_probe")),
    "training.stages": Rule((list,)),
    "training.optimizer": Rule(choices=("adamw", "sgd")),
    "training.momentum": _fraction(),
    "training.learning_rate": Rule(NUMBER, interval=(0.0, 10.0, True)),
    "training.weight_decay": _fraction(True),
    "training.schedule": Rule(choices=("cosine", "plateau")),
    "training.warmup_epochs": Rule(NUMBER, interval=(0.0, 1e6, True)),
    "training.min_learning_rate_ratio": _fraction(True),
    "training.plateau_factor": _fraction(),
    "training.label_smoothing": _fraction(),
    "training.class_balance": Rule(choices=("none", "weights", "sampling")),
    "training.fsl_lambda": Rule(NUMBER, interval=(0.0, 1e6, True)),
    "training.fsl_centres": Rule(choices=("ema", "batch")),
    "training.fsl_momentum": _fraction(),
    "training.monitor": Rule((str,)),
    "training.precision": Rule(choices=("auto", "float32", "mixed_float16", "float64")),
    "training.jit_compile": Rule((bool, str), choices=(True, False, "auto")),
    "training.distribute": Rule(choices=("none", "mirrored", "multi_worker")),
    "evaluation.subset": Rule(choices=("test", "val")),
}
STAGE_KEYS = ("image_size", "epochs", "learning_rate", "warmup_epochs", "morph")



def parse_override(text: str) -> tuple[str, Any]:
    """"a.b=value" -> ("a.b", value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        return key.strip(), read_yaml_text(value, f"override {key.strip()}")
    except UserError as error:
        raise ConfigError(str(error)) from None


def set_dotted(config: dict, key: str, value: Any) -> None:
    """Set config["a"]["b"] for key "a.b" (creating nothing: unknown keys fail in resolve).

    Grid axes are dotted names themselves: "grid.data.fold" sets the axis "data.fold".
    """
    if key.startswith("grid."):
        config.setdefault("grid", {})[key[len("grid."):]] = value
        return
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {part} is not a section")
    node[leaf] = value


def _merge(defaults: dict, user: dict, prefix: str, where: str) -> dict:
    merged = copy.deepcopy(defaults)
    for key, value in user.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            raise ConfigError(f"{where}unknown key {dotted!r}{did_you_mean(dotted, [prefix + k for k in defaults])} "
                              f"(valid keys here: {sorted(defaults)})")
        default = defaults[key]
        if isinstance(default, dict) and dotted not in ("grid", "task_options"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{dotted} must be a mapping, got {value!r}")
            merged[key] = _merge(default, value, f"{dotted}.", where)
            continue
        if dotted not in ("grid", "task_options"):
            RULES.get(dotted, Rule()).check(dotted, value, default, where)
        merged[key] = value
    return merged


def resolve_config(user: dict | None = None, overrides: Iterable[str] = (),
                   source: str | None = None) -> dict:
    """Defaults + `user` + "key=value" `overrides`, checked; errors name `source` (the file)
    for what the file says, and the override itself for what an override changes."""
    user = copy.deepcopy(user or {})
    if not isinstance(user, dict):
        raise ConfigError(f"{source or 'config'}: must be a YAML mapping")
    config = _resolve(copy.deepcopy(user), f"{source}: " if source else "")
    for text in overrides:  # one at a time on a valid config: a new error is this one's
        try:
            set_dotted(user, *parse_override(text))
        except ConfigError as error:
            raise ConfigError(f"--set {text}: {error}") from None
        config = _resolve(copy.deepcopy(user), f"--set {text}: ")
    return config


def _resolve(user: dict, where: str) -> dict:
    model = user.pop("model", None) or {}
    if not isinstance(model, dict):
        raise ConfigError(f"{where}model must be a mapping, got {model!r}")
    config = _merge(DEFAULTS, user, "", where)
    data = config["data"]
    config["model"] = _resolve_model(  # stages set their own sizes: values only then
        model, where, None if config["training"]["stages"] else data["image_size"])
    task = _task_class(config["data"]["task"], where)
    config["task_options"] = _task_options(task, config["task_options"], where)
    split = config["data"]["split"]
    if not (isinstance(split, list) and len(split) == 3 and abs(sum(split) - 1) < 1e-6
            and all(isinstance(share, (int, float)) and not isinstance(share, bool)
                    and 0 <= share for share in split)):
        raise ConfigError(f"{where}data.split must be three shares (train, val, test) of at "
                          f"least 0 summing to 1, got {split!r}")
    data = config["data"]
    if not data["folds"] and split[2] == 0 and config["evaluation"]["subset"] == "test":
        raise ConfigError(f"{where}data.split {split!r} holds out no test images: give the test "
                          "share, or set evaluation.subset: val to report on the validation "
                          "images that also chose the best epoch (not a held-out estimate)")
    if data["split_by"] == "image" and data["group_duplicates"]:
        raise ConfigError(f"{where}data.split_by 'image' splits every image on its own; it "
                          "cannot keep duplicates together (data.group_duplicates)")
    crop = data["train_crop"]
    if crop is not None:
        if not (isinstance(crop, list) and len(crop) == 2 and all(
                isinstance(side, int) and not isinstance(side, bool) and 0 < side
                <= data["image_size"] for side in crop)):
            raise ConfigError(f"{where}data.train_crop must be [height, width], each at most "
                              f"data.image_size ({data['image_size']}), got {crop!r}")
        if not 0.0 <= data["crop_positive_rate"] <= 1.0:
            raise ConfigError(f"{where}data.crop_positive_rate must be in [0, 1]")
        if config["training"]["stages"]:
            raise ConfigError(f"{where}data.train_crop and training.stages do not combine yet")
    if data["folds"] and not 0 <= data["fold"] < data["folds"]:
        raise ConfigError(f"{where}data.fold must be in 0..{data['folds'] - 1}, got {data['fold']}")
    training = config["training"]
    if training["monitor"] is None:
        training["monitor"] = task.monitor
    if not isinstance(training["monitor"], str):
        raise ConfigError(f"{where}training.monitor must be a logged metric's name, "
                          f"got {training['monitor']!r}")
    try:
        task.metric_direction(training["monitor"])
    except UserError as error:
        raise ConfigError(f"{where}{error}") from None
    if training["epochs"] < 0 or training["batch_size"] < 1:
        raise ConfigError(f"{where}training.epochs must be >= 0 and training.batch_size >= 1")
    if training["learning_rate"] == 0:
        raise ConfigError(f"{where}training.learning_rate must be above 0")
    _check_schedule(training, where)
    if training["distribute"] != "none" and training["gradient_accumulation"] > 1:
        raise ConfigError(f"{where}training.gradient_accumulation does not combine with "
                          "training.distribute: Keras applies accumulated gradients inside a "
                          "conditional, which tf.distribute cannot synchronise; spread the batch "
                          "over more replicas instead")
    if training["distribute"] != "none" and training["scenario"] != "fine_tune":
        raise ConfigError(f"{where}training.distribute trains a fine_tune scenario; a "
                          f"{training['scenario']} fits its head on one device (distribute: none)")
    training["stages"] = _resolve_stages(training["stages"], config, where)
    problem = task.check_stages(training["stages"])
    if problem:
        raise ConfigError(f"{where}training.stages: {problem}")
    return config


def _check_schedule(training: dict, where: str) -> None:
    """The learning-rate schedule and gradient accumulation fit together and with the batch."""
    steps = training["gradient_accumulation"]
    if steps < 1 or training["batch_size"] % steps:
        raise ConfigError(f"{where}training.gradient_accumulation must be >= 1 and divide "
                          f"training.batch_size ({training['batch_size']}), got {steps}")
    if training["plateau_patience"] < 1 or training["plateau_factor"] == 0:
        raise ConfigError(f"{where}training.plateau_patience must be >= 1 and "
                          "training.plateau_factor above 0")
    if training["schedule"] == "plateau" and (training["warmup_epochs"] or any(
            stage.get("warmup_epochs") for stage in training["stages"] or [])):
        raise ConfigError(f"{where}training.schedule 'plateau' has no warm-up; set "
                          "training.warmup_epochs: 0")


def _resolve_model(model: dict, where: str, image_size: int | None = None) -> dict:
    """The model section: the classifier's defaults, or another builder's own keys, checked
    against the builder's signature (which imports the builder, and so Keras: the keys'
    own rules are checked first)."""
    builder = model.get("builder", "classifier")
    if builder == "classifier":
        resolved = _merge(DEFAULTS["model"], model, "model.", where)
    else:
        resolved = dict(model)
    from mammo_keras.models.builders import check_builder_arguments

    try:
        check_builder_arguments(builder, {k: v for k, v in resolved.items() if k != "builder"},
                                where, image_size)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return resolved


def _task_options(task: type, options, where: str) -> dict:
    """The task's `OPTIONS` defaults updated by the config's `task_options`, checked: keys the
    task does not know, and values of another type than the default's, are errors."""
    if not isinstance(options, dict):
        raise ConfigError(f"{where}task_options must be a mapping, got {options!r}")
    return _merge(task.OPTIONS, options, "task_options.", where)


def _task_class(name: str, where: str) -> type:
    from mammo_keras.tasks import get_task_class

    try:
        return get_task_class(name)
    except ValueError as error:
        raise ConfigError(f"{where}{error}") from None


def _resolve_stages(stages, config: dict, where: str) -> list[dict]:
    """Each stage with every key of STAGE_KEYS (missing ones from data / training)."""
    if not isinstance(stages, list):
        raise ConfigError(f"{where}training.stages must be a list of mappings, got {stages!r}")
    training = config["training"]
    resolved = []
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ConfigError(f"{where}training.stages[{index}] must be a mapping")
        unknown = sorted(set(stage) - set(STAGE_KEYS))
        if unknown:
            raise ConfigError(f"{where}unknown key 'training.stages[{index}].{unknown[0]}'"
                              f"{did_you_mean(unknown[0], STAGE_KEYS)} (valid keys: "
                              f"{list(STAGE_KEYS)})")
        entry = {"image_size": config["data"]["image_size"], "epochs": training["epochs"],
                 "learning_rate": training["learning_rate"],
                 "warmup_epochs": training["warmup_epochs"], **stage}
        if not isinstance(entry["image_size"], int) or entry["image_size"] < 1 or \
                not isinstance(entry["epochs"], int) or entry["epochs"] < 1:
            raise ConfigError(f"{where}training.stages[{index}] needs a positive integer "
                              "image_size and epochs")
        if "morph" in entry:
            entry["morph"] = _resolve_stage_morph(entry, resolved, index, where)
            if not entry["morph"]:
                del entry["morph"]
        resolved.append(entry)
    return resolved


def _resolve_stage_morph(stage: dict, previous: list[dict], index: int, where: str
                         ) -> list[dict]:
    """A stage's morphs (training/stage_transition.py), checked against the stage before."""
    from mammo_keras.training.stage_transition import resolve_morphs

    value = stage["morph"]
    if value in (None, [], "none"):
        return []
    name = f"{where}training.stages[{index}].morph"
    if not previous:
        raise ConfigError(f"{name}: the first stage has no trained model to morph")
    steps = resolve_morphs(value, name)
    before, size = previous[-1]["image_size"], stage["image_size"]
    if any(step["operation"] == "to_resolution" for step in steps) and \
            (size % before or size // before < 2):
        raise ConfigError(f"{name}: to_resolution needs an image_size that is 2, 3, 4... times "
                          f"the last stage's {before}, got {size}")
    return steps


def training_stages(config: dict) -> list[dict]:
    """The stages of a resolved config: its `training.stages`, or one stage of
    (data.image_size, training.epochs, training.learning_rate)."""
    training = config["training"]
    if training["stages"]:
        return training["stages"]
    return [{"image_size": config["data"]["image_size"], "epochs": training["epochs"],
             "learning_rate": training["learning_rate"],
             "warmup_epochs": training["warmup_epochs"]}]


def _deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "grid":
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: str | Path, _seen: tuple = ()) -> dict:
    """The user mapping of a YAML file; a `base: other.yaml` key (relative to the file) is
    read first and this file's keys are merged over it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: `base` files include each other")
    try:
        user = read_yaml(path) or {}
    except UserError as error:
        raise ConfigError(str(error)) from None
    if not isinstance(user, dict):
        raise ConfigError(f"{path}: must be a YAML mapping")
    base = user.pop("base", None)
    if base is not None:
        user = _deep_merge(read_config_file(path.parent / base, _seen + (path.resolve(),)), user)
    return user


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> dict:
    """Read a YAML config (with its `base` chain) and resolve it (see `resolve_config`)."""
    return resolve_config(read_config_file(path), overrides, source=str(path))


def config_hash(config: dict) -> str:
    """A short stable hash of a resolved config (without the grid), naming what was trained."""
    trained = copy.deepcopy({key: value for key, value in config.items() if key != "grid"})
    # Keys added after runs were recorded hash as before while they hold their defaults,
    # so finished runs and cells of older versions are still recognised.
    if trained.get("model", {}).get("builder") == "classifier":
        del trained["model"]["builder"]
    if not trained.get("training", {}).get("stages", True):
        del trained["training"]["stages"]
    if not trained.get("task_options", True):
        del trained["task_options"]
    if isinstance(trained.get("data", {}).get("synthetic"), dict):
        trained["data"]["synthetic"] = without_default_synthetic_keys(trained["data"]["synthetic"])
    if trained.get("data", {}).get("train_crop", 0) is None:
        del trained["data"]["train_crop"]
        trained["data"].pop("crop_positive_rate", None)
    for key, default in (("optimizer", "adamw"), ("momentum", 0.9)):
        if trained.get("training", {}).get(key, default) == default:
            trained.get("training", {}).pop(key, None)
    text = json.dumps(trained, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def without_default_synthetic_keys(options: dict) -> dict:
    """The phantom options without keys added later that hold their defaults, so that hashes
    of configs (and phantom folders) written before them stay the same."""
    return {key: value for key, value in options.items()
            if key not in SYNTHETIC_LATER_DEFAULTS or value != SYNTHETIC_LATER_DEFAULTS[key]}


def write_config(path: str | Path, config: dict) -> None:
    """Write a resolved config as YAML, atomically."""
    write_text_atomically(path, yaml.safe_dump(config, sort_keys=False))
