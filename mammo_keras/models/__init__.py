"""Models of mammo-keras.

- `build_classifier(backbone, head, num_classes, input_shape, weights)`: the
  GAGM / SEVector classifier family of Dahes 2025 on a baseline CNN,
  ConvNeXt-Tiny or InceptionV3; a `DescribedModel` ending in logits -> Softmax.
- `FeatureSmoothingModel(classifier, FeatureSmoothingLoss(...))`: trains a
  classifier with the Feature Smoothing Loss through `model.fit`.
- `DescribedModel`, `ModelDescription`, `describe`, `description_of`: models that
  carry their task, class names, input size and preprocessing inside the artefact.
- `build_hds_unet(...)`: the residual U-Net of hybrid deep supervision (Zhang 2018) with
  its ablations; `DeepSupervisionModel(unet, HybridDeepSupervisionLoss(...))` trains it.
- `with_logits`, `logits_model`: class logits found from the graph.
- `feature_pyramid(model)`: the backbone's feature maps by stride ("P1".."P5").
- `build_backbone`, `BACKBONES`, `HEADS`: the parts, for inspection and tests.
- `load_model(path)`: a `.keras` file, with every mammo-keras layer registered first.

Importing this package registers its layers, losses and models with Keras (so
`keras.saving.load_model` reads a mammo-keras `.keras` file afterwards).
"""

from mammo_keras.catalogue import BACKBONE_NAMES, HEADS
from mammo_keras.models.backbones import (BACKBONES, build_backbone, feature_pyramid,
                                          get_backbone_spec)
from mammo_keras.models.baseline_cnn import BaselineCNN
from mammo_keras.models.classifier import EMBEDDING_LAYER, build_classifier
from mammo_keras.models.deep_supervision import DeepSupervisionModel
from mammo_keras.models.description import (DescribedModel, ModelDescription, clone_described,
                                            describe, description_of)
from mammo_keras.models.feature_smoothing import FeatureSmoothingModel
from mammo_keras.models.hds_unet import build_hds_unet
from mammo_keras.models.loading import load_model
from mammo_keras.models.logits import logits_model, with_logits

__all__ = ["BACKBONES", "BACKBONE_NAMES", "EMBEDDING_LAYER", "HEADS", "BaselineCNN", "DeepSupervisionModel", "DescribedModel",
           "FeatureSmoothingModel", "ModelDescription", "build_backbone", "build_classifier", "build_hds_unet",
           "clone_described", "describe", "description_of", "feature_pyramid",
           "get_backbone_spec", "load_model", "logits_model", "with_logits"]
