"""kaggle_merged: the Kaggle "Mammography dataset from INbreast, MIAS and DDSM" class folders.

Build: tfds build datasets/kaggle_merged --manual_dir=DIR
The set is pre-augmented (rotated / flipped copies): split it with
`mammo-keras data split DIR --group-duplicates`, not at random.
"""

from mammo_keras.data.tfds_builder import MammographyBuilder


class Builder(MammographyBuilder):
    """Kaggle merged set: labels from the class folders; no patient ids, no masks."""

    ADAPTER = "kaggle_merged"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download the Kaggle dataset "Mammography dataset from INbreast, MIAS and DDSM" and
    extract it into manual_dir (class folders Benign / Malignant / Normal).
    """
