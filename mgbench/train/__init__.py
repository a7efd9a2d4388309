"""Training: the loop, recipes, and training methods (standard; group-wise inhibition)."""

from mgbench.train import gwi  # noqa: F401  (registers the "gwi" method)
from mgbench.train.loop import TrainResult, get_method, register_method, train, write_card
from mgbench.train.recipes import RECIPES, Recipe, get_recipe

__all__ = ["RECIPES", "Recipe", "TrainResult", "get_method", "get_recipe", "register_method", "train", "write_card"]
