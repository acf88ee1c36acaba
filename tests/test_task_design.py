"""A task is the only place that knows a task: no code outside `mammo_keras/tasks/` compares a
task's name, a plug-in task's field is read (or refused), and a model's description brings
back the task that trained it with its options."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import mammo_keras
from mammo_keras.data import Record
from mammo_keras.data.pipeline import load_dataset
from mammo_keras.data.targets import TargetSpec, default_class_names
from mammo_keras.models.description import ModelDescription
from mammo_keras.tasks import (LesionSegmentationTask, MalignancyTask, Task, task_for_model,
                               task_names)

PACKAGE = Path(mammo_keras.__file__).parent


def _source(node: ast.AST) -> str:
    return ast.unparse(node).lower()


def _task_name_comparisons(tree: ast.AST, names: set[str]) -> list[str]:
    """`x.task == "density"`, `task in ("malignancy", ...)`, `{"density": ...}[task]`-style
    switches: a comparison whose one side mentions a task and whose other is a task's name,
    and dict literals keyed by task names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            literals = {value.value for side in sides for value in ast.walk(side)
                        if isinstance(value, ast.Constant) and isinstance(value.value, str)}
            if literals & names and any("task" in _source(side) for side in sides
                                        if not isinstance(side, (ast.Constant, ast.Tuple,
                                                                 ast.List, ast.Set))):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Dict):
            keys = {key.value for key in node.keys if isinstance(key, ast.Constant)}
            if len(keys & names) >= 2:
                found.append(f"line {node.lineno}: a dict keyed by task names")
    return found


def test_no_code_outside_the_tasks_switches_on_a_task_name():
    names = set(task_names()) | {"segmentation"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "tasks") in path.parents:
            continue
        for problem in _task_name_comparisons(ast.parse(path.read_text()), names):
            offenders.append(f"{path.relative_to(PACKAGE.parent)} {problem}")
    # the deprecated `load_dataset(task=...)` maps its old values in one table, and only there
    shim = [line for line in offenders if line.startswith("mammo_keras/data/pipeline.py")
            and "dict keyed" in line]
    assert len(shim) == 1
    assert [line for line in offenders if line not in shim] == []


def test_the_checker_sees_the_switches_it_is_for():
    names = {"malignancy", "density"}
    code = ('if description.task == "lesion_segmentation": pass\n'
            'stratify = "density" if data["task"] == "density" else "label"\n'
            'COLUMNS = {"density": 1, "malignancy": 2}\n'
            'if field == "density": pass\n')
    found = _task_name_comparisons(ast.parse(code), names | {"lesion_segmentation"})
    assert sorted(line.split(":")[0] for line in found) == ["line 1", "line 2", "line 3"]


def _record(path: str, **extra) -> Record:
    return Record(path, "normal", "B", "p", "L", "CC", "test", extra=extra)


def test_a_plug_in_task_reads_its_own_field_or_is_refused():
    records = [_record("a.png", birads="4"), _record("b.png", birads="1"), _record("c.png")]
    spec = TargetSpec("birads").resolved(records)
    assert spec.class_names == ("1", "4")
    assert [spec.class_index(record) for record in records] == [1, 0, None]

    class BiradsTask(Task):
        target_field = "birads"

    task = BiradsTask({"data": {"classes": None, "crop": True, "flip": True, "window": False,
                                "equalize": False}})
    assert task.target_spec(task.class_names(records)).field == "birads"
    with pytest.raises(ValueError, match="no record has the field 'birads'"):
        load_dataset([_record("a.png")], target="birads")


def test_default_classes_come_from_the_field_not_the_task():
    records = [dataclasses.replace(_record(f"{k}.png"), density=d)
               for k, d in enumerate("FGD")]
    assert default_class_names(records, "label") == ("normal", "benign", "malignant")
    assert default_class_names(records, "density") == ("F", "G", "D")  # the scale, in order
    assert default_class_names(records[:1] + [_record("x.png")], "density") == ("B", "F")


def test_a_model_brings_back_its_task_with_the_options_it_trained_with():
    description = ModelDescription(task="lesion_segmentation", task_options={"lesions": "all"},
                                   class_names=("no_mass", "mass"), image_size=64,
                                   builder={"name": "hds_unet", "arguments": {"exits": "hds"}})
    task = task_for_model(description)
    assert isinstance(task, LesionSegmentationTask) and task.options["lesions"] == "all"
    assert task.output_kinds == {"label": "class_probabilities", "mask": "mask"}
    assert isinstance(task_for_model(ModelDescription()), MalignancyTask)


def test_a_task_states_the_stages_it_cannot_train():
    morph = [{"operation": "to_resolution"}]
    assert "to_resolution" in LesionSegmentationTask.check_stages(
        [{"image_size": 64}, {"image_size": 128, "morph": morph}])
    assert MalignancyTask.check_stages([{"image_size": 64}, {"image_size": 128,
                                                              "morph": morph}]) is None


def test_ordinal_density_is_yielded_in_its_order(tmp_path):
    from mammo_keras.tasks import DensityTask

    spec = DensityTask({"data": {"classes": None}}).target_spec(("F", "G", "D"))
    assert spec.ordinal and spec.field == "density"
    records = [dataclasses.replace(_record(f"{k}.png"), density=d) for k, d in enumerate("DGF")]
    assert [spec.class_index(record) for record in records] == [2, 1, 0]
