"""What `mammo-keras dashboard` tells the Streamlit app: passed as environment variables,
since `streamlit run` starts the app script in a fresh module."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

DEFAULT_MAX_UPLOAD_MB = 200

MODEL_VARIABLE = "MAMMO_KERAS_DASHBOARD_MODEL"
RESULTS_VARIABLE = "MAMMO_KERAS_DASHBOARD_RESULTS"
MAX_UPLOAD_VARIABLE = "MAMMO_KERAS_DASHBOARD_MAX_UPLOAD_MB"


@dataclasses.dataclass(frozen=True)
class DashboardSettings:
    """model: a .keras file, SavedModel folder or .tflite file (None: the demo model);
    results: an evaluated run folder for the cohort page (None: the model's own run folder);
    max_upload_mb: the largest upload accepted."""

    model: Path | None = None
    results: Path | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB

    @classmethod
    def from_environment(cls) -> "DashboardSettings":
        model, results = os.environ.get(MODEL_VARIABLE), os.environ.get(RESULTS_VARIABLE)
        return cls(Path(model) if model else None, Path(results) if results else None,
                   float(os.environ.get(MAX_UPLOAD_VARIABLE, DEFAULT_MAX_UPLOAD_MB)))

    def environment(self) -> dict[str, str]:
        """The environment variables that carry these settings to the app."""
        variables = {MAX_UPLOAD_VARIABLE: f"{self.max_upload_mb:g}"}
        if self.model is not None:
            variables[MODEL_VARIABLE] = str(self.model.resolve())
        if self.results is not None:
            variables[RESULTS_VARIABLE] = str(self.results.resolve())
        return variables
