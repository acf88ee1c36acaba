"""Deployment: SavedModel (TF Serving layout, preprocessing inside) and TFLite, with parity checks.

>>> from mammo_keras.export import QUANTIZATIONS
>>> QUANTIZATIONS
('none', 'dynamic', 'float16', 'int8')
"""

from mammo_keras.export.exporter import (FLOAT_TOLERANCE, MIN_AGREEMENT, ExportParityError,
                                         check_parity, export_model)
from mammo_keras.export.runtime import Predictor, keras_predictor, load_predictor
from mammo_keras.export.tflite import QUANTIZATIONS

__all__ = ["ExportParityError", "FLOAT_TOLERANCE", "MIN_AGREEMENT", "Predictor",
           "QUANTIZATIONS", "check_parity", "export_model", "keras_predictor", "load_predictor"]
