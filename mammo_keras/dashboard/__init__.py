"""The interactive dashboard: `mammo-keras dashboard [--model M] [--results RUN_DIR] [--port P]`.

A Streamlit app (`app.py`, needs the `dashboard` extra) over modules that work without it:
`cases` (uploads, window / level, the decision), `cohort` (operating point and errors of an
evaluated run), `model_cards`, `case_reports` (PNG / PDF) and `demo_model`.

>>> from mammo_keras.dashboard import window_level
>>> window_level([0.0, 0.5, 1.0], center=0.5, width=0.5).tolist()
[0.0, 0.5, 1.0]
"""

from mammo_keras.lazy import lazy_exports

# name -> the module it comes from, imported when first used (mammo_keras.lazy)
_EXPORTS = {
    "case_report": "mammo_keras.dashboard.case_reports",
    "DashboardSettings": "mammo_keras.dashboard.settings",
    "decide": "mammo_keras.dashboard.cases",
    "error_cases": "mammo_keras.dashboard.cohort",
    "load_cohort": "mammo_keras.dashboard.cohort",
    "model_card": "mammo_keras.dashboard.model_cards",
    "model_card_markdown": "mammo_keras.dashboard.model_cards",
    "operating_point": "mammo_keras.dashboard.cohort",
    "positive_class": "mammo_keras.dashboard.cases",
    "read_upload": "mammo_keras.dashboard.cases",
    "window_level": "mammo_keras.dashboard.cases",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
