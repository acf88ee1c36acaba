"""A one-page case report (PNG or PDF): the mammogram with its heat-map, the class
probabilities against the threshold, the decision, the model and the not-for-diagnosis notice."""

from __future__ import annotations

import datetime
import io
import textwrap
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from mammo_keras.errors import UserError
from mammo_keras.dashboard.model_cards import NOT_FOR_DIAGNOSIS  # noqa: E402

REPORT_FORMATS = ("png", "pdf")


def case_report(picture: Image.Image, case_name: str, probabilities: Sequence[float],
                class_names: Sequence[str], decision: dict, threshold: float, model_name: str,
                explanation: str, fmt: str = "pdf", note: str = "") -> bytes:
    """Render the report of one case; returns the PNG or PDF file's bytes.

    Args:
        picture: what the page shows (the windowed mammogram, heat-map blended in).
        probabilities: (K,) class probabilities; class_names: their K names.
        decision: from `cases.decide`.
        explanation: one line, e.g. "Grad-CAM of class malignant, layer conv4".
        note: what the model was trained on where the case is unlike it
            (`evaluation.competence.answer_note`), printed under the verdict.
    """
    if fmt not in REPORT_FORMATS:
        raise UserError(f"report format must be one of {REPORT_FORMATS}, not {fmt!r}")
    figure = plt.figure(figsize=(8.27, 11.69))  # A4 portrait
    figure.suptitle("mammo-keras case report", fontsize=16, x=0.06, ha="left")
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    verdict = (f"FLAGGED: P({decision['positive']}) = {decision['p_positive']:.3f} "
               f">= threshold {threshold:.2f}" if decision["flagged"] else
               f"not flagged: P({decision['positive']}) = {decision['p_positive']:.3f} "
               f"< threshold {threshold:.2f}")
    header = [f"Case: {case_name}", f"Model: {model_name}", f"Date: {stamp}", verdict,
              f"Most likely class: {decision['most_likely']}", f"Heat-map: {explanation}"]
    if note:
        header += textwrap.wrap(f"Note: {note}", 80)
    figure.text(0.06, 0.94, "\n".join(header), va="top", fontsize=10, family="monospace")
    image_axis = figure.add_axes([0.06, 0.30, 0.50, 0.52])
    image_axis.imshow(np.asarray(picture))
    image_axis.set_axis_off()
    bars = figure.add_axes([0.64, 0.50, 0.31, 0.25])
    colours = ["crimson" if name == decision["positive"] else "steelblue" for name in class_names]
    bars.barh(list(class_names), probabilities, color=colours)
    for row, p in enumerate(probabilities):
        bars.text(min(float(p) + 0.02, 0.8), row, f"{float(p):.3f}", va="center")
    bars.axvline(threshold, color="crimson", linestyle="--", linewidth=1)
    bars.set(xlim=(0, 1), xlabel="probability", title="Class probabilities")
    bars.invert_yaxis()
    notice = textwrap.fill(f"NOT FOR DIAGNOSIS. {NOT_FOR_DIAGNOSIS}", 95)
    figure.text(0.06, 0.22, notice, va="top", fontsize=9, color="darkred")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=100)
    plt.close(figure)
    return buffer.getvalue()
