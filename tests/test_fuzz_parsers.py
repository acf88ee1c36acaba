"""Fuzzing the text a user hands mammo-keras: MIAS's Info.txt, CBIS-DDSM's CSVs, INbreast's
CSV and XML, split manifests and YAML configs. Each valid file, mutated (tests/fuzzing.py),
must give records / a config, or a `UserError` (DataError and ConfigError are ones) of one
line, within a time limit; rows that cannot be used are listed in `Records.skipped`.
"""

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from mammo_keras.data import load_records, write_split_manifest
from mammo_keras.data.splits import read_split_manifest
from mammo_keras.data.synthetic_writer import write_synthetic
from mammo_keras.errors import UserError
from mammo_keras.training.config import load_config
from tests.fuzzing import MUTATIONS, mutate, time_limit

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 20
FAST = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

MIAS_INFO = b"""Header text of the real file
mdb001 G CIRC B 8 4 3
mdb002 G NORM
mdb003 D CALC M *NOTE 3*
mdb004 D SPIC M 5 5 2
mdb004 D CALC B 10 10 2
mdb005 F NORM
"""


def outcome(action, what: str) -> str:
    """"ok" or "error" for `action()`; any other exception, or a multi-line error, fails."""
    try:
        with time_limit(SECONDS, what):
            action()
    except UserError as error:
        assert "\n" not in str(error).strip(), str(error)
        return "error"
    return "ok"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("parsers")
    mias = base / "mias"
    mias.mkdir()
    for number in range(1, 6):
        (mias / f"mdb{number:03d}.pgm").write_bytes(b"P5\n16 16\n255\n" + bytes([100]) * 256)
    (mias / "Info.txt").write_bytes(MIAS_INFO)
    return {"mias": mias,
            "inbreast": write_synthetic(base / "inbreast", 6, size=256, fmt="inbreast", seed=8),
            "cbis": write_synthetic(base / "cbis", 6, size=256, fmt="cbis", seed=5),
            "synthetic": write_synthetic(base / "synthetic", 8, size=256, seed=1)}


def mutated_copy(source: Path, target: Path, member: str, mutations) -> Path:
    """A copy of dataset folder `source` at `target` with file `member` mutated."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    path = target / member
    path.write_bytes(mutate(path.read_bytes(), mutations))
    return target


def _members(folder: Path, pattern: str) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob(pattern))


@pytest.mark.parametrize("dataset, pattern", [("mias", "Info.txt"), ("inbreast", "*.csv"),
                                              ("inbreast", "*.xml"), ("cbis", "*.csv")])
@FAST
@given(mutations=MUTATIONS)
def test_a_mutated_dataset_table_gives_records_or_one_clear_error(datasets, tmp_path, dataset,
                                                                  pattern, mutations):
    source = datasets[dataset]
    members = _members(source, pattern)
    assert members, f"no {pattern} in the {dataset} fixture"
    member = members[len(mutations) % len(members)]
    root = mutated_copy(source, tmp_path / dataset, member, mutations)
    outcome(lambda: load_records(dataset, root=root), f"{dataset} {member}")


@FAST
@given(mutations=MUTATIONS)
def test_a_mutated_split_manifest_is_read_or_refused_in_one_line(datasets, tmp_path,
                                                                 mutations):
    records = load_records("synthetic", root=datasets["synthetic"])
    manifest = write_split_manifest(tmp_path / "split.csv", {"train": records[:5],
                                                             "test": records[5:]})
    manifest.write_bytes(mutate(manifest.read_bytes(), mutations))
    outcome(lambda: read_split_manifest(manifest, records), "split manifest")


@FAST
@given(mutations=MUTATIONS)
def test_a_mutated_config_resolves_or_is_one_config_error(tmp_path, mutations):
    path = tmp_path / "config.yaml"
    path.write_bytes(mutate((ROOT / "experiments" / "quickstart.yaml").read_bytes(), mutations))
    outcome(lambda: load_config(path), "config")


@pytest.mark.slow
@pytest.mark.parametrize("dataset, pattern", [("mias", "Info.txt"), ("inbreast", "*.csv"),
                                              ("inbreast", "*.xml"), ("cbis", "*.csv")])
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutations=MUTATIONS)
def test_a_long_random_fuzz_of_the_tables(datasets, tmp_path, dataset, pattern, mutations):
    test_a_mutated_dataset_table_gives_records_or_one_clear_error.hypothesis.inner_test(
        datasets, tmp_path, dataset, pattern, mutations)
