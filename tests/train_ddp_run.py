"""Run by tests/test_train.py (under torchrun, or alone): train the tiny task from a recipe file; exit
status 143 when the run was stopped by a signal."""

import sys

import train_tiny  # noqa: F401  (registers the tiny task)

from mattekit.train import load_recipe
from mattekit.train.trainer import train

recipe_file, data, run_dir = sys.argv[1:4]
result = train(load_recipe(recipe_file), data, run_dir, device="cpu", quiet=True)
sys.exit(143 if result.stopped else 0)
