"""Models of mammo-keras.

- `build_classifier(backbone, head, num_classes, input_shape, weights)`: the
  GAGM / SEVector classifier family of Dahes 2025 on a baseline CNN,
  ConvNeXt-Tiny or InceptionV3.
- `FeatureSmoothingModel(classifier, FeatureSmoothingLoss(...))`: trains a
  classifier with the Feature Smoothing Loss through `model.fit`.
- `build_backbone`, `BACKBONES`, `HEADS`: the parts, for inspection and tests.
"""

from mammo_keras.models.backbones import BACKBONES, build_backbone, get_backbone_spec
from mammo_keras.models.baseline_cnn import BaselineCNN
from mammo_keras.models.classifier import EMBEDDING_LAYER, HEADS, build_classifier
from mammo_keras.models.feature_smoothing import FeatureSmoothingModel

__all__ = ["BACKBONES", "EMBEDDING_LAYER", "HEADS", "BaselineCNN", "FeatureSmoothingModel",
           "build_backbone", "build_classifier", "get_backbone_spec"]
