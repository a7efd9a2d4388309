"""The model zoo: one registry, ``create_model``/``load_model``, and the architectures.

Importing this package registers every architecture (one module per family).
"""

from mgbench.models import (  # noqa: F401  (importing a family registers its architectures)
    ltpa,
    mgnet,
    resnet,
    robustbench,  # registers the loader of ``robustbench:NAME`` names
    tdam,
)
from mgbench.models._builder import RANDOM_INIT, LoadedModel, ModelCard, create_model, list_cards, load_model, zoo_dir
from mgbench.models._registry import get_entry, list_architectures, register_model
from mgbench.models.anytime import StepOutputs, forward_steps, num_steps

__all__ = [
    "RANDOM_INIT", "LoadedModel", "ModelCard", "StepOutputs", "create_model", "forward_steps", "get_entry",
    "list_architectures", "list_cards", "load_model", "num_steps", "register_model", "zoo_dir",
]
