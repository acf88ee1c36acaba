"""Names of what mammo-keras builds, importable without TensorFlow: the command line offers
them as choices before any model code loads (`mammo_keras.models.BACKBONES` holds one spec
per backbone name, built with Keras; a test holds the two together)."""

BACKBONE_NAMES = ("baseline_cnn", "convnext_tiny", "convnext_base", "inception_v3")
HEADS = ("gap", "gagm", "gagm_se")
# What `mammo-keras bench --model` times: the classifier backbones and the HDS U-Net
BENCH_MODELS = BACKBONE_NAMES + ("hds_unet",)
