"""Model builders by name: a config's `model` section names one and gives its keyword arguments.

    model:
      builder: classifier          # a name of BUILDERS, or "package.module:function"
      backbone: convnext_tiny      # the builder's keyword arguments, checked against
      head: gagm_se                # its signature

A builder is a Python function that takes keyword arguments and declares that it returns
a `keras.Model` (`-> keras.Model`); when it accepts `num_classes` and `input_shape` the task
passes them (the config does not repeat what the data decides). The model comes back as a
`DescribedModel` naming its builder and arguments. A builder outside `mammo_keras` is code
from elsewhere: it is imported only when the user trusts code (`mammo_keras.trust`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import keras

from mammo_keras.errors import UserError, did_you_mean
from mammo_keras.trust import import_reference

BUILDERS: dict[str, str] = {
    "classifier": "mammo_keras.models.classifier:build_classifier",
    "saved": "mammo_keras.models.loading:build_from_file",   # a .keras file to go on from
    "zero_shot": "mammo_keras.models.zero_shot:build_zero_shot",  # a CLIP model and class prompts
    "clip_encoder": "mammo_keras.models.zero_shot:build_clip_encoder",  # a CLIP image tower to probe
    "hds_unet": "mammo_keras.models.hds_unet:build_hds_unet",  # HDS residual U-Net (Zhang 2018)
}
# What the task passes itself; a config may not set them.
TASK_ARGUMENTS = ("num_classes", "input_shape", "task")


def get_builder(name: str) -> Callable[..., keras.Model]:
    """The builder function `name` (a key of BUILDERS or "package.module:function").

    Raises:
        UserError: an unknown name, code from outside mammo_keras the user does not trust,
            or something that is not a model builder (a Python function declared
            `-> keras.Model`), before anything is called.
    """
    target = BUILDERS.get(name, name)
    if ":" not in str(target):
        raise UserError(f"unknown model builder {name!r}; choose one of {sorted(BUILDERS)} "
                         "or name a function as 'package.module:function'")
    builder = import_reference(target, "model.builder")
    problem = _not_a_builder(builder)
    if problem:
        raise UserError(f"model.builder {name!r} is not a model builder: {problem}")
    return builder


def _not_a_builder(candidate: Any) -> str | None:
    """Why `candidate` is not a model builder, or None when it is one."""
    if not inspect.isfunction(candidate):
        return f"it is a {type(candidate).__name__}, not a Python function"
    try:
        returns = inspect.signature(candidate, eval_str=True).return_annotation
    except (NameError, TypeError, SyntaxError):  # an annotation that cannot be resolved here
        returns = inspect.signature(candidate).return_annotation
        if isinstance(returns, str) and returns.split(".")[-1].endswith("Model"):
            return None
    if isinstance(returns, type) and issubclass(returns, keras.Model):
        return None
    shown = "nothing" if returns is inspect.Signature.empty else getattr(
        returns, "__name__", str(returns))
    return f"{candidate.__name__} declares that it returns {shown}, not a keras.Model"


def builder_parameters(name: str) -> list[str]:
    """The keyword arguments a config may give builder `name`."""
    signature = inspect.signature(get_builder(name))
    return [parameter.name for parameter in signature.parameters.values()
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            and parameter.name not in TASK_ARGUMENTS]


def check_builder_arguments(name: str, arguments: dict, where: str = "",
                            image_size: int | None = None) -> None:
    """A `UserError` naming the first key `name` does not take (and the ones it does), or,
    where the builder declares a `check_arguments` function of its own (same keywords), the
    first value it refuses: so a config is refused by value when it is read, not by a
    traceback when its model is built. `image_size`: the input side the model will have."""
    valid = builder_parameters(name)
    for key in arguments:
        if key not in valid:
            raise UserError(f"{where}unknown key 'model.{key}' for builder {name!r}"
                             f"{did_you_mean(key, valid)} (valid keys: {['builder'] + valid})")
    check = getattr(get_builder(name), "check_arguments", None)
    if check is None:
        return
    accepted = inspect.signature(check).parameters
    given = dict(arguments)
    if image_size is not None and "input_shape" in accepted:
        given["input_shape"] = (image_size, image_size, 1)
    try:
        check(**given)
    except UserError as error:
        raise UserError(f"{where}model ({name}): {error}") from None


def build_model(section: dict, num_classes: int, image_size: int,
                task: str | None = None) -> keras.Model:
    """Build the model of a config's `model` section for `num_classes` classes at `image_size`
    (and `task`, for builders that take one)."""
    from mammo_keras.models.description import describe

    name = section.get("builder", "classifier")
    arguments = {key: value for key, value in section.items() if key != "builder"}
    check_builder_arguments(name, arguments)
    builder = get_builder(name)
    accepted = inspect.signature(builder).parameters
    given: dict[str, Any] = dict(arguments)
    if "num_classes" in accepted:
        given["num_classes"] = num_classes
    if "input_shape" in accepted:
        given["input_shape"] = (image_size, image_size, 1)
    model = builder(**given, **({"task": task} if "task" in accepted else {}))
    if not isinstance(model, keras.Model):
        raise UserError(f"model.builder {name!r} returned a {type(model).__name__}, not a "
                         "keras.Model")
    return describe(model, image_size=image_size,
                    builder={"name": name, "arguments": _jsonable(given)})


def _jsonable(arguments: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else
            value if isinstance(value, (str, int, float, bool, list, dict, type(None)))
            else str(value) for key, value in arguments.items()}
