"""Tasks: what a model learns from a record, how it trains and how it is judged.

- `Task`: the interface (targets, model builder, losses, metrics, evaluation, summary).
- `MalignancyTask` ("malignancy"), `DensityTask` ("density"): classification.
- `LesionSegmentationTask` ("lesion_segmentation"): mass mask + mass present (HDS, Zhang 2018).
- `register_task`, `get_task`, `task_names`: select a task by a config's `data.task`,
  a registered name or "package.module:ClassName"; `task_for_model`: the task a saved
  model's description names, rebuilt with its options (what `evaluate` asks).
"""

from mammo_keras.tasks.base import (Task, get_task, get_task_class, register_task, task_for_model,
                                    task_names)
from mammo_keras.tasks.classification import ClassificationTask, DensityTask, MalignancyTask
from mammo_keras.tasks.segmentation import LesionSegmentationTask

__all__ = ["ClassificationTask", "DensityTask", "LesionSegmentationTask",
           "MalignancyTask", "Task", "get_task",
           "get_task_class", "register_task", "task_for_model", "task_names"]
