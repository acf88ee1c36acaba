"""The interactive dashboard: `mammo-keras dashboard [--model M] [--results RUN_DIR] [--port P]`.

A Streamlit app (`app.py`, needs the `dashboard` extra) over modules that work without it:
`cases` (uploads, window / level, the decision), `cohort` (operating point and errors of an
evaluated run), `model_card`, `case_report` (PNG / PDF) and `demo_model`.

>>> from mammo_keras.dashboard import window_level
>>> window_level([0.0, 0.5, 1.0], center=0.5, width=0.5).tolist()
[0.0, 0.5, 1.0]
"""

from mammo_keras.dashboard.case_report import case_report
from mammo_keras.dashboard.cases import decide, positive_class, read_upload, window_level
from mammo_keras.dashboard.cohort import error_cases, load_cohort, operating_point
from mammo_keras.dashboard.model_card import model_card, model_card_markdown
from mammo_keras.dashboard.settings import DashboardSettings

__all__ = ["DashboardSettings", "case_report", "decide", "error_cases", "load_cohort",
           "model_card", "model_card_markdown", "operating_point", "positive_class",
           "read_upload", "window_level"]
