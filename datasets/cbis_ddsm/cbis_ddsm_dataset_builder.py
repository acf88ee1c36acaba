"""cbis_ddsm: CBIS-DDSM full mammograms with ROI masks and the official train / test split.

Build: tfds build datasets/cbis_ddsm --manual_dir=DIR
"""

from mammo_keras.data.tfds_builder import MammographyBuilder


class Builder(MammographyBuilder):
    """CBIS-DDSM: label = worst pathology per image, BI-RADS density, union of ROI masks."""

    ADAPTER = "cbis_ddsm"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download CBIS-DDSM from The Cancer Imaging Archive (the DICOM tree, with the NBIA data
    retriever) and the four *_case_description_*_set.csv files into manual_dir.
    """
