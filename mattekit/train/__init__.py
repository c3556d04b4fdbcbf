"""``mattekit train``: reproduce a paper's training recipe on one GPU, several, or a cluster.

The pieces: a recipe (:mod:`mattekit.train.recipe`, TOML data), a task per architecture
(:mod:`mattekit.train.task`), the data chain (:mod:`mattekit.train.data`), and the trainer
(:mod:`mattekit.train.trainer`).  See docs/train.md.
"""

from mattekit.train.recipe import DataOptions, Recipe, builtin_recipes, load_recipe
from mattekit.train.task import (
    NoOptions,
    Optimization,
    StepContext,
    Task,
    get_task,
    list_tasks,
    register_task,
)

__all__ = [
    "DataOptions",
    "NoOptions",
    "Optimization",
    "Recipe",
    "StepContext",
    "Task",
    "builtin_recipes",
    "get_task",
    "list_tasks",
    "load_recipe",
    "register_task",
]
