"""Deployment: SavedModel (TF Serving layout, preprocessing inside) and TFLite, with parity checks.

>>> from mammo_keras.export import QUANTIZATIONS
>>> QUANTIZATIONS
('none', 'dynamic', 'float16', 'int8')
"""

from mammo_keras.lazy import lazy_exports

# name -> the module it comes from, imported when first used (mammo_keras.lazy)
_EXPORTS = {
    "check_parity": "mammo_keras.export.exporter",
    "export_model": "mammo_keras.export.exporter",
    "ExportParityError": "mammo_keras.export.exporter",
    "FLOAT_TOLERANCE": "mammo_keras.export.exporter",
    "keras_predictor": "mammo_keras.export.runtime",
    "load_predictor": "mammo_keras.export.runtime",
    "MIN_AGREEMENT": "mammo_keras.export.exporter",
    "Predictor": "mammo_keras.export.runtime",
}
# The export vocabulary, here so the command line parses without importing TensorFlow.
FORMATS = ("savedmodel", "tflite", "all")
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")
__all__ = sorted([*_EXPORTS, "FORMATS", "QUANTIZATIONS"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
