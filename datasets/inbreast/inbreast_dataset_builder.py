"""inbreast: INbreast full-field digital mammograms with polygon ROI masks.

Build: tfds build datasets/inbreast --manual_dir=DIR
"""

from mammo_keras.data.tfds_builder import MammographyBuilder


class Builder(MammographyBuilder):
    """INbreast: label from BI-RADS (1 normal, 2-3 benign, 4a-6 malignant), ACR density."""

    ADAPTER = "inbreast"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    INbreast is distributed on request by its authors (University of Porto). Place
    INbreast.csv, AllDICOMs/ and AllXML/ in manual_dir.
    """
