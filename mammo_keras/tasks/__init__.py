"""Tasks: what a model learns from a record, how it trains and how it is judged.

- `Task`: the interface (targets, model builder, losses, metrics, evaluation, summary).
- `MalignancyTask` ("malignancy"), `DensityTask` ("density"): classification.
- `register_task`, `get_task`, `task_names`: select a task by a config's `data.task`,
  a registered name or "package.module:ClassName".
"""

from mammo_keras.tasks.base import Task, get_task, get_task_class, register_task, task_names
from mammo_keras.tasks.classification import ClassificationTask, DensityTask, MalignancyTask

__all__ = ["ClassificationTask", "DensityTask", "MalignancyTask", "Task", "get_task",
           "get_task_class", "register_task", "task_names"]
