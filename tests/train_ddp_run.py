"""Run by tests/test_train.py under torchrun: train the tiny task (registered on import) from a recipe."""

import sys

import train_tiny  # noqa: F401  (registers the tiny task)

from mattekit.train import load_recipe
from mattekit.train.trainer import train

recipe_file, data, run_dir = sys.argv[1:4]
train(load_recipe(recipe_file), data, run_dir, device="cpu", quiet=True)
