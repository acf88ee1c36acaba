"""Interpretability: Grad-CAM / Grad-CAM++ heat-maps on the original mammogram, and checks of them.

>>> from mammo_keras.explain import METHODS
>>> METHODS
('gradcam', 'gradcam++')
"""

from mammo_keras.explain.explain import explain_files, explain_image, overlay
from mammo_keras.explain.gradcam import METHODS, find_target_layer, grad_cam, upsample
from mammo_keras.explain.localization import (heatmap_iou, localization_metrics, pointing_hit,
                                              wilson_interval)

__all__ = ["METHODS", "explain_files", "explain_image", "find_target_layer", "grad_cam",
           "heatmap_iou", "localization_metrics", "overlay", "pointing_hit", "upsample",
           "wilson_interval"]
