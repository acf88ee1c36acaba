"""Models of mammo-keras.

- `build_classifier(backbone, head, num_classes, input_shape, weights)`: the
  GAGM / SEVector classifier family of Dahes 2025 on a baseline CNN,
  ConvNeXt-Tiny or InceptionV3; a `DescribedModel` ending in logits -> Softmax.
- `FeatureSmoothingModel(classifier, FeatureSmoothingLoss(...))`: trains a
  classifier with the Feature Smoothing Loss through `model.fit`.
- `DescribedModel`, `ModelDescription`, `describe`, `description_of`: models that
  carry their task, class names, input size and preprocessing inside the artefact.
- `with_logits`, `logits_model`: class logits found from the graph.
- `feature_pyramid(model)`: the backbone's feature maps by stride ("P1".."P5").
- `build_backbone`, `BACKBONES`, `HEADS`: the parts, for inspection and tests.
- `load_model(path)`: a `.keras` file, with every mammo-keras layer registered first.
"""

from mammo_keras.lazy import lazy_exports

# name -> the module it comes from, imported when first used (mammo_keras.lazy)
_EXPORTS = {
    "BACKBONES": "mammo_keras.models.backbones",
    "BaselineCNN": "mammo_keras.models.baseline_cnn",
    "build_backbone": "mammo_keras.models.backbones",
    "build_classifier": "mammo_keras.models.classifier",
    "clone_described": "mammo_keras.models.description",
    "describe": "mammo_keras.models.description",
    "DescribedModel": "mammo_keras.models.description",
    "description_of": "mammo_keras.models.description",
    "EMBEDDING_LAYER": "mammo_keras.models.classifier",
    "feature_pyramid": "mammo_keras.models.backbones",
    "FeatureSmoothingModel": "mammo_keras.models.feature_smoothing",
    "get_backbone_spec": "mammo_keras.models.backbones",
    "load_model": "mammo_keras.models.loading",
    "logits_model": "mammo_keras.models.logits",
    "ModelDescription": "mammo_keras.models.description",
    "with_logits": "mammo_keras.models.logits",
}
# The names the command line offers, here so it parses without importing TensorFlow
# (BACKBONES, built with Keras, has one spec per name; a test holds them together).
BACKBONE_NAMES = ("baseline_cnn", "convnext_tiny", "inception_v3")
HEADS = ("gap", "gagm", "gagm_se")
__all__ = sorted([*_EXPORTS, "BACKBONE_NAMES", "HEADS"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
