"""`MammogramPreprocessor`: the one object every consumer uses to go from a film to the model's
input and back, built from the model's description."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mammo_keras.data.preprocessing import apply_geometry, invert_geometry, preprocess
from mammo_keras.data.preprocessor import MammogramPreprocessor
from mammo_keras.data.synthetic import generate_phantom, synthetic_specs
from mammo_keras.models.description import ModelDescription


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    return generate_phantom(synthetic_specs(1, seed=4, size=256)[0])[0].astype(np.float32)


@pytest.mark.parametrize("options", [{}, {"window": True, "equalize": True},
                                     {"crop": False, "flip": False}])
def test_forward_is_the_preprocess_function_and_inverse_its_geometry(film, options):
    preprocessor = MammogramPreprocessor(64, **options)
    image, geometry = preprocessor(film, "R")
    expected, expected_geometry = preprocess(film, 64, laterality="R", **options)
    np.testing.assert_array_equal(image.numpy(), expected.numpy())
    np.testing.assert_array_equal(geometry.numpy(), expected_geometry.numpy())
    grid = np.random.default_rng(0).random((64, 64, 1)).astype(np.float32)
    np.testing.assert_array_equal(preprocessor.invert(grid, geometry, film.shape).numpy(),
                                  invert_geometry(grid, geometry, film.shape).numpy())
    mask = (film > 0.5).astype(np.uint8)
    np.testing.assert_array_equal(preprocessor.mask(mask, geometry).numpy(),
                                  apply_geometry(tf.convert_to_tensor(mask), geometry, 64,
                                                 method="nearest").numpy())


def test_a_mask_goes_to_the_grid_and_back_onto_the_film(film):
    preprocessor = MammogramPreprocessor(128)
    _, geometry = preprocessor(film)
    mask = np.zeros(film.shape, np.uint8)
    top, left, height, width = (int(v) for v in geometry.numpy()[1:])
    mask[top + height // 3: top + height // 2, :] = 1  # a band across the crop
    back = preprocessor.invert(preprocessor.mask(mask, geometry), geometry, film.shape)
    inside = np.zeros(film.shape, bool)
    box = preprocessor.crop_box(geometry, film.shape)
    inside[int(box[0]):int(box[2]), int(box[1]):int(box[3])] = True
    agreement = np.mean((back.numpy()[..., 0] > 0.5) == (mask > 0)[..., None][..., 0],
                        where=inside)
    assert agreement > 0.97


def test_it_is_the_models_own_and_round_trips_its_config():
    description = ModelDescription(image_size=96, preprocessing={"window": True})
    preprocessor = description.preprocessor()
    assert preprocessor == MammogramPreprocessor(96, window=True)
    assert MammogramPreprocessor.from_config(preprocessor.get_config()) == preprocessor
    with pytest.raises(ValueError, match="unknown preprocessing option"):
        MammogramPreprocessor(96, sharpen=True)
    with pytest.raises(ValueError, match="input size is not known"):
        ModelDescription().preprocessor()


def test_a_disk_cache_of_other_options_is_not_reused(tmp_path):
    from mammo_keras.data import load_records, write_synthetic
    from mammo_keras.data.pipeline import load_dataset

    records = load_records(write_synthetic(tmp_path / "p", 4, size=256, seed=1))
    cache = str(tmp_path / "store")
    plain = np.concatenate([x for x, _ in load_dataset(records, image_size=32, cache=cache)])
    windowed = np.concatenate([x for x, _ in load_dataset(records, image_size=32, cache=cache,
                                                          window=True)])
    fresh = np.concatenate([x for x, _ in load_dataset(records, image_size=32, window=True)])
    np.testing.assert_array_equal(windowed, fresh)
    assert not np.array_equal(plain, windowed)


def test_with_status_names_what_the_readers_would_refuse():
    """The graph's input checks: the film is preprocessed either way (padded, cleaned), and
    its status says whether an answer may be given."""
    from mammo_keras.data.preprocessor import STATUS_OK, MammogramPreprocessor

    preprocessor = MammogramPreprocessor(32)
    film = np.zeros((96, 64), np.float32)
    film[8:88, :40] = np.linspace(0.3, 0.9, 80)[:, None]
    nan = film.copy()
    nan[0, 0] = np.nan
    cases = {"ok": film, "raw": film * 4095, "blank": np.full((96, 64), 0.5, np.float32),
             "nan": nan, "tiny": np.ones((1, 1), np.float32) * 0.5,
             "dark": np.where(np.arange(96 * 64).reshape(96, 64) == 5, 1.0, 0.0)}
    statuses = {}
    for name, image in cases.items():
        processed, geometry, status = preprocessor.with_status(np.asarray(image, np.float32))
        assert processed.shape == (32, 32, 1) and bool(np.all(np.isfinite(processed)))
        statuses[name] = status.numpy().decode()
    assert statuses["ok"] == STATUS_OK
    assert statuses["raw"].startswith("values outside [0, 1]")
    assert statuses["blank"] == "blank image: one value everywhere"
    assert statuses["nan"] == "values that are not finite numbers"
    assert statuses["tiny"] == "image smaller than 16 px on a side: not a mammogram"
    assert statuses["dark"] == "no breast found"
