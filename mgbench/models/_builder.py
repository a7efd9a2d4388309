"""Turning a model name into a ready module: registry names, zoo cards, user factories.

Three ways in, one function (:func:`load_model`):
- a registered architecture (``resnet18``): randomly initialised (weights ``random-init``, which
  tables mark and the leaderboard leaves out unless asked), for FLOPs, timing or training;
- a zoo card (``resnet-tiny.digits.s0``): ``models/<name>.toml`` names the architecture, its
  arguments and a checkpoint with its sha256;
- a user factory, ``path/to/file.py:factory`` or ``package.module:factory``, returning an
  ``nn.Module`` that takes [0, 1] NCHW images and returns logits;
- a RobustBench zoo model, ``robustbench:NAME`` (:mod:`mgbench.models.robustbench`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn

from mgbench.data import class_list
from mgbench.errors import InputError
from mgbench.models._registry import get_entry
from mgbench.provenance import REPO_ROOT, sha256_file
from mgbench.registry import Registry

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

RANDOM_INIT = "random-init"  # the weights of a model nobody trained

if TYPE_CHECKING:
    from mgbench.data import DataSpec

ROBUSTBENCH_PREFIX = "robustbench:"

# Names with a prefix (``robustbench:NAME``) that another module of the zoo loads; that module
# registers its loader with :func:`register_prefix_loader` (``mgbench/models/__init__.py`` imports it).
PrefixLoader = Callable[[str, "DataSpec | None"], "LoadedModel"]
_PREFIX_LOADERS: Registry[PrefixLoader] = Registry("model prefix")


def register_prefix_loader(prefix: str) -> Callable[[PrefixLoader], PrefixLoader]:
    """Route every model name that starts with ``prefix`` to the decorated loader."""
    return _PREFIX_LOADERS.register(prefix)


def zoo_dir() -> Path:
    """The model zoo: ``$MGBENCH_ZOO`` or the repository's ``models/``."""
    return Path(os.environ.get("MGBENCH_ZOO", REPO_ROOT / "models"))


@dataclass
class ModelCard:
    """A zoo entry, read from ``models/<name>.toml``."""

    name: str
    architecture: str
    dataset: str
    arguments: dict[str, Any]
    checkpoint: Path | None
    sha256: str | None
    checkpoint_format: str
    class_list: str | None
    description: str
    training: dict[str, Any]
    source: Path

    @classmethod
    def read(cls, path: Path) -> "ModelCard":
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"model card {path} cannot be read ({exc}): fix the TOML") from exc
        for key in ("name", "architecture", "dataset"):
            if key not in data:
                raise InputError(f"model card {path} lacks the field {key!r}: add it")
        ckpt = data.get("checkpoint", {})
        ckpt_path = ckpt.get("path")
        if ckpt_path is not None:
            ckpt_path = Path(os.path.expanduser(ckpt_path))
            if not ckpt_path.is_absolute():
                ckpt_path = path.parent / ckpt_path
        return cls(
            name=data["name"],
            architecture=data["architecture"],
            dataset=data["dataset"],
            arguments=dict(data.get("arguments", {})),
            checkpoint=ckpt_path,
            sha256=ckpt.get("sha256"),
            checkpoint_format=ckpt.get("format", "mgbench"),
            class_list=ckpt.get("class_list"),
            description=data.get("description", ""),
            training=dict(data.get("training", {})),
            source=path,
        )


def list_cards() -> dict[str, ModelCard]:
    cards = {}
    folder = zoo_dir()
    if folder.is_dir():
        for path in sorted(folder.glob("*.toml")):
            card = ModelCard.read(path)
            cards[card.name] = card
    return cards


@dataclass
class LoadedModel:
    """A model and what identifies it in the results store."""

    module: nn.Module
    name: str
    architecture: str
    weights: str  # checkpoint sha256, RANDOM_INIT, or "user:<sha256 of the factory file>"
    card: ModelCard | None = None
    init_seed: int | None = None  # the seed of random-init weights, when they were seeded
    params: int = field(init=False)

    def __post_init__(self) -> None:
        self.params = sum(p.numel() for p in self.module.parameters())

    @property
    def random_init(self) -> bool:
        """Untrained weights: their rows are marked and the leaderboard leaves them out."""
        return self.weights == RANDOM_INIT

    def check_dataset(self, data: "DataSpec") -> None:
        """Refuse a zoo card's weights on a dataset they were not trained on."""
        if self.card is not None and self.card.dataset != data.label:
            raise InputError(
                f"model card {self.name} was trained on {self.card.dataset}, not {data.label}: "
                "choose a card for this dataset or pass --data"
            )

    def identity(self) -> dict[str, Any]:
        identity = {"model": self.name, "arch": self.architecture, "weights": self.weights}
        return identity if self.init_seed is None else {**identity, "init_seed": self.init_seed}


def _state_dict_from(obj: Any) -> dict[str, torch.Tensor]:
    """Accept a bare state_dict or the usual wrappers ({'state_dict': ...}, {'model': ...})."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("no state_dict of tensors inside")
    return obj


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception from code mgbench does not own."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in a few words. torch's own
    message advises re-running with ``weights_only=False`` (arbitrary code execution), advice a
    benchmark must never pass on, so only the reason is kept."""
    text = str(exc)
    unsafe = re.search(r"GLOBAL ([\w.]+)", text)
    if unsafe:
        return f"it holds Python objects besides tensors ({unsafe.group(1)})"
    reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if reason:
        return f"not a tensor checkpoint: {reason.group(1).strip()}"
    if isinstance(exc, EOFError):
        return "the file is empty or cut short"
    if "weights_only" in text:
        return f"torch.load refused it ({exc.__class__.__name__})"
    return _first_line(exc)


def load_weights_only(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU. The unpickler's warnings about a file
    it then refuses (e.g. an unexpected pickle protocol) are dropped: the refusal is the message."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return obj


def read_checkpoint(path: Path, where: str) -> dict[str, torch.Tensor]:
    """Load a checkpoint's state_dict with ``weights_only=True``; errors name ``where``."""
    if not path.is_file():
        raise InputError(f"{where}: checkpoint {path} does not exist: train it or fix the path")
    try:
        return _state_dict_from(load_weights_only(path))
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(
            f"{where}: checkpoint {path} is not a loadable state_dict ({load_failure(exc)}): "
            "point the card at weights saved with torch.save(model.state_dict(), path)"
        ) from exc


def load_state(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strict load whose error names the card and the first mismatching keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{label} keys {', '.join(keys[:3])}" + (f" (+{len(keys) - 3})" if len(keys) > 3 else ""))
        raise InputError(f"{where}: checkpoint does not fit the architecture: {'; '.join(parts)}")
    module.load_state_dict(state)


def imagenet1k_indices(class_list_name: str, imagenet_train: str | None) -> list[int]:
    """ImageNet-1k output indices of a class list. ImageNet-1k indexes classes by sorted WNID;
    the ``mgnet`` list is the first 100 sorted WNIDs (indices 0..99). Other lists need the
    user's full 1000-class train folder to read the sorted WNIDs from."""
    wnids = class_list(class_list_name)
    if class_list_name == "mgnet":
        return list(range(len(wnids)))
    if not imagenet_train or not Path(imagenet_train).is_dir():
        raise InputError(
            f"slicing ImageNet-1k weights to the {class_list_name} list needs the 1000 WNIDs: "
            "set imagenet1k_train in the card's [checkpoint] to your full ImageNet train folder"
        )
    all_wnids = sorted(p.name for p in Path(imagenet_train).iterdir() if p.is_dir())
    if len(all_wnids) != 1000:
        raise InputError(f"{imagenet_train} has {len(all_wnids)} class folders, not the 1000 of ImageNet-1k")
    position = {w: i for i, w in enumerate(all_wnids)}
    return [position[w] for w in wnids]


def _slice_imagenet1k(state: dict[str, torch.Tensor], indices: list[int]) -> dict[str, torch.Tensor]:
    """torchvision ImageNet-1k ResNet weights -> our Classifier with 100 outputs."""
    out = {f"net.{k}": v for k, v in state.items()}
    out["net.fc.weight"] = out["net.fc.weight"][indices].clone()
    out["net.fc.bias"] = out["net.fc.bias"][indices].clone()
    return out


def _build(
    factory: Callable[..., Any], arguments: dict[str, Any], where: str, fix: str, fix_raised: str | None = None
) -> Any:
    """``factory(**arguments)``, with arguments it does not take, arguments it lacks and any
    exception inside it reported as one :class:`InputError` naming ``where`` and ``fix``
    (``fix_raised`` for an exception, if different)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no introspectable signature: let the call decide
        signature = None
    if signature is not None:
        params = signature.parameters.values()
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [key for key in arguments if key not in named and not takes_any]
        if unknown:
            raise InputError(f"{where} takes no argument {', '.join(map(repr, unknown))} "
                             f"(it takes: {', '.join(named) or 'none'}): {fix}")
        needed = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                  and p.name not in arguments]
        if needed:
            raise InputError(f"{where} needs the argument(s) {', '.join(needed)}: {fix}")
    try:
        return factory(**arguments)
    except InputError:
        raise
    except Exception as exc:  # user code or user arguments: one line, the cause kept for --debug
        raise InputError(
            f"{where} raised {_first_line(exc)}: {fix_raised or fix} (--debug shows the traceback)"
        ) from exc


def _from_card(card: ModelCard, overrides: dict[str, Any]) -> LoadedModel:
    entry = get_entry(card.architecture)
    where = f"model card {card.name} ({card.source})"
    module = _build(entry.factory, {**card.arguments, **overrides}, f"{where}: architecture {card.architecture}",
                    "fix the card's [arguments]")
    if card.checkpoint is None:
        return LoadedModel(module, card.name, card.architecture, RANDOM_INIT, card)
    if card.sha256:
        if not card.checkpoint.is_file():
            raise InputError(f"{where}: checkpoint {card.checkpoint} does not exist: train it or fix the path")
        actual = sha256_file(card.checkpoint)
        if actual != card.sha256:
            raise InputError(
                f"{where}: checkpoint {card.checkpoint} has sha256 {actual[:12]}..., the card says "
                f"{card.sha256[:12]}...: restore the file or update the card"
            )
    state = read_checkpoint(card.checkpoint, where)
    if card.checkpoint_format == "torchvision-imagenet1k":
        indices = imagenet1k_indices(card.class_list or "mgnet", card.training.get("imagenet1k_train"))
        state = _slice_imagenet1k(state, indices)
    elif card.checkpoint_format != "mgbench":
        raise InputError(f"{where}: unknown checkpoint format {card.checkpoint_format!r}")
    load_state(module, state, where)
    weights = card.sha256 or sha256_file(card.checkpoint)
    return LoadedModel(module, card.name, card.architecture, weights, card)


def _from_factory(spec: str) -> LoadedModel:
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputError(f"model file {path} does not exist: pass --model path/to/file.py:factory")
        module_spec = importlib.util.spec_from_file_location(f"mgbench_user_{path.stem}", path)
        assert module_spec is not None and module_spec.loader is not None
        user_module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = user_module
        try:
            module_spec.loader.exec_module(user_module)
        except Exception as exc:
            raise InputError(f"model file {path} failed to import: {_first_line(exc)} "
                             "(--debug shows the traceback)") from exc
        weights = f"user:{sha256_file(path)[:16]}"
    else:
        try:
            user_module = importlib.import_module(target)
        except Exception as exc:  # ImportError, or the module's own code failing
            raise InputError(f"cannot import {target!r} for --model {spec}: {_first_line(exc)}") from exc
        weights = f"user:{target}"
    factory = getattr(user_module, attr, None)
    if not callable(factory):
        raise InputError(f"{target} has no callable {attr!r}: pass --model FILE.py:FACTORY")
    model = _build(factory, {}, f"--model {spec}: the factory",
                   "--model takes a function called without arguments that returns the model", "fix the factory")
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    return LoadedModel(model, spec, "user", weights)


def load_model(name: str, *, init_seed: int | None = 0, data: "DataSpec | None" = None,
               **overrides: Any) -> LoadedModel:
    """Resolve ``name`` (zoo card, user factory, ``robustbench:NAME`` or registered architecture) to a model.

    ``data``, where given, is the dataset the model will be evaluated on: a RobustBench model
    keeps only the logits of an ImageNet100 class list. A bare architecture is initialised from
    ``init_seed`` without disturbing the caller's random state, so the same name always means the
    same weights; with ``init_seed=None`` it draws from the global generator as it stands (the
    training loop seeds that itself)."""
    for prefix, loader in _PREFIX_LOADERS.items():
        if name.startswith(prefix):
            return loader(name, data)
    if ":" in name:
        return _from_factory(name)
    cards = list_cards()
    if name in cards:
        return _from_card(cards[name], overrides)
    entry = get_entry(name)
    where, fix = f"architecture {name}", "pass only arguments it takes, with valid values"
    if init_seed is None:
        return LoadedModel(_build(entry.factory, overrides, where, fix), name, name, RANDOM_INIT)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        module = _build(entry.factory, overrides, where, fix)
    return LoadedModel(module, name, name, RANDOM_INIT, init_seed=init_seed)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """timm-style entry point: the ``nn.Module`` for a card, factory or architecture name."""
    return load_model(name, **overrides).module
