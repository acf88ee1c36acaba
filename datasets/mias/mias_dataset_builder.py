"""mias: the mini-MIAS database (322 MLO films, 1024 x 1024, 8-bit), through mammo-keras.

Build: tfds build datasets/mias --manual_dir=DIR   (DIR holds all-mias.tar.gz or its files)
"""

from pathlib import Path

from mammo_keras.data.tfds_builder import MammographyBuilder


class Builder(MammographyBuilder):
    """MIAS: label = worst finding per film, density F/G/D, circle ROI masks."""

    ADAPTER = "mias"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download all-mias.tar.gz from the MIAS database site (research use only; cite the
    database, see its Licence.txt) and place it, or its extracted files, in manual_dir.
    """

    def dataset_root(self, manual_dir: Path) -> Path:
        archive = manual_dir / "all-mias.tar.gz"
        return archive if archive.exists() else manual_dir
