"""A model's answers are refused, not shown, when they cannot be probabilities.

One non-finite weight makes every output NaN; argmax of NaN is class 0, so without a check
every film would be called "normal" with p = nan. Every consumer (predict, evaluate, explain,
the dashboard) passes the outputs through `check_probabilities` / `check_outputs`.

    >>> import numpy as np
    >>> check_probabilities(np.array([[0.2, 0.8]]), "m.keras")
    array([[0.2, 0.8]])
    >>> check_probabilities(np.array([[np.nan, 1.0]]), "m.keras")
    Traceback (most recent call last):
    ...
    mammo_keras.errors.UserError: m.keras: the model's class probabilities are not finite (NaN or infinity) for 1 of 1 images; the model is broken (non-finite weights or a diverged training) and is refused
"""

from __future__ import annotations

import numpy as np

from mammo_keras.errors import UserError

# |sum - 1| a row of probabilities may show: float32 softmax is within 1e-6, an int8 TFLite
# output within a few 1/256 steps
SUM_TOLERANCE = 0.05


def check_probabilities(probabilities: np.ndarray, where: str) -> np.ndarray:
    """`probabilities` (N, K) when every value is finite, in [0, 1], and every row sums to 1.

    Raises:
        UserError: one line naming `where` (the model file) and how many images failed.
    """
    values = np.asarray(probabilities)
    rows = values.reshape(len(values), -1) if values.ndim else values.reshape(1, -1)
    broken = ~np.isfinite(rows).all(axis=1)
    if broken.any():
        raise UserError(f"{where}: the model's class probabilities are not finite (NaN or "
                        f"infinity) for {int(broken.sum())} of {len(rows)} images; the model is "
                        "broken (non-finite weights or a diverged training) and is refused")
    outside = (rows < -1e-6).any(axis=1) | (rows > 1 + 1e-6).any(axis=1) | \
        (np.abs(rows.sum(axis=1) - 1.0) > SUM_TOLERANCE)
    if outside.any():
        first = rows[int(np.argmax(outside))]
        raise UserError(f"{where}: the model's class outputs are not probabilities (a row "
                        f"sums to {first.sum():.3g}, values {np.round(first, 3).tolist()}); "
                        "a classifier must end in a softmax")
    return probabilities


def check_outputs(outputs: dict[str, np.ndarray], where: str,
                  probabilities: str = "probabilities") -> dict[str, np.ndarray]:
    """`outputs` (a served model's, by name) when its class probabilities pass
    `check_probabilities` and every other output (masks) is finite."""
    for name, value in outputs.items():
        if name == probabilities:
            check_probabilities(value, where)
        elif not np.isfinite(np.asarray(value)).all():
            raise UserError(f"{where}: the model's {name!r} output is not finite (NaN or "
                            "infinity); the model is broken and is refused")
    return outputs


def check_weights(model, where: str) -> None:
    """A UserError naming `where` and the first variable of `model` (a Keras model) holding
    a value that is not finite: such a model answers NaN for every image."""
    for variable in model.weights:
        if not np.isfinite(variable.numpy()).all():  # no float64 copy of a large model
            raise UserError(f"{where}: weight {variable.path!r} holds values that are not "
                            "finite (NaN or infinity); the model would answer NaN and is "
                            "refused")
