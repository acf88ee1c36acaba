"""Whether a finished run learnt anything: divergence and collapse, said in done.json.

A learning rate of 10 ends in a model that answers one class; without a word the run exits 0
and its metrics look like any other run's. `run_warnings` reads the epoch history and the
evaluation and returns one line per problem (an empty list for a healthy run).

    >>> run_warnings([{"epoch": 1, "loss": 1.1}, {"epoch": 2, "loss": float("nan")}], {})
    ['training diverged: the training loss is not finite from epoch 2 on (lower training.learning_rate)']
"""

from __future__ import annotations

import math
from typing import Sequence

# The training loss of the last epoch above this many times the first one: diverged
RISE_FACTOR = 2.0


def run_warnings(history: Sequence[dict], metrics: dict,
                 class_names: Sequence[str] = ()) -> list[str]:
    """The problems of a run: a non-finite or rising training loss (`history`, one row per
    epoch with "epoch" and "loss"), a single predicted class on the evaluated subset
    (`metrics["confusion_matrix"]`, rows = truth)."""
    warnings = []
    losses = [(row.get("epoch", index + 1), float(row["loss"]))
              for index, row in enumerate(history) if row.get("loss") not in (None, "")]
    broken = [epoch for epoch, value in losses if not math.isfinite(value)]
    if broken:
        warnings.append(f"training diverged: the training loss is not finite from epoch "
                        f"{broken[0]} on (lower training.learning_rate)")
    elif len(losses) >= 2 and losses[-1][1] > RISE_FACTOR * losses[0][1]:
        warnings.append(f"training diverged: the training loss rose from {losses[0][1]:.3g} "
                        f"(epoch {losses[0][0]}) to {losses[-1][1]:.3g} (epoch "
                        f"{losses[-1][0]}); lower training.learning_rate")
    confusion = metrics.get("confusion_matrix")
    if confusion:
        predicted = [sum(row[column] for row in confusion) for column in range(len(confusion))]
        present = sum(1 for row in confusion if sum(row))
        if present >= 2 and sum(1 for count in predicted if count) == 1:
            column = next(index for index, count in enumerate(predicted) if count)
            name = class_names[column] if column < len(class_names) else f"class {column}"
            warnings.append(f"the model has collapsed: it predicts {name} for all "
                            f"{sum(predicted)} evaluated images (check the learning rate and "
                            "the class balance)")
    return warnings
