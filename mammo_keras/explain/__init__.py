"""Interpretability: Grad-CAM / Grad-CAM++ heat-maps on the original mammogram, and checks of them.

>>> from mammo_keras.explain import METHODS
>>> METHODS
('gradcam', 'gradcam++')
"""

from mammo_keras.lazy import lazy_exports

# name -> the module it comes from, imported when first used (mammo_keras.lazy)
_EXPORTS = {
    "explain_files": "mammo_keras.explain.explain",
    "explain_image": "mammo_keras.explain.explain",
    "find_target_layer": "mammo_keras.explain.gradcam",
    "grad_cam": "mammo_keras.explain.gradcam",
    "heatmap_iou": "mammo_keras.explain.localization",
    "localization_metrics": "mammo_keras.explain.localization",
    "overlay": "mammo_keras.explain.explain",
    "pointing_hit": "mammo_keras.explain.localization",
    "upsample": "mammo_keras.explain.gradcam",
    "wilson_interval": "mammo_keras.explain.localization",
}
# Here so the command line parses without importing TensorFlow.
METHODS = ("gradcam", "gradcam++")
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}  # as captions print them
__all__ = sorted([*_EXPORTS, "METHODS", "METHOD_NAMES"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
