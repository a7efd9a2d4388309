"""RobustBench's ImageNet model zoo as mgbench models: ``--model robustbench:NAME``.

``NAME`` is a key of ``robustbench.model_zoo.model_dicts[imagenet][Linf]`` or
``[imagenet][corruptions]`` (``robustbench:corruptions/NAME`` picks the corruptions entry where
a name is in both). The architecture comes from the zoo entry; the weights from:

- a local RobustBench model directory in robustbench's own layout,
  ``DIR/imagenet/<Linf|corruptions>/<NAME>.pt``, when ``--robustbench-dir DIR`` (or
  ``$MGBENCH_ROBUSTBENCH_DIR``) is set. Nothing is downloaded then: a missing file is an input
  error naming the file expected;
- otherwise robustbench's own loader (``robustbench.utils.load_model``), which downloads into
  ``~/.cache/mgbench/robustbench`` (same layout) unless the file is there already.

Files of gdrive-hosted entries are read by robustbench's loader (it knows each checkpoint's key
quirks), with one change: robustbench falls back to a non-strict load for every ImageNet model
(its checkpoints lack the normalisation buffers), which would silently keep random weights for a
file with the wrong keys; here only the normalisation buffers may be missing. The few entries
whose weights robustbench fetches from torchvision or the timm hub (``Standard_R50``, the DeiT
models) accept, as a local file, the state_dict of the zoo module.

The module takes [0, 1] images and normalises inside (RobustBench's convention, also mgbench's)
and returns 1000 ImageNet-1k logits; on ImageNet100 only the logits of the class list are kept,
which is the same as slicing the classifier's rows, as for torchvision weights.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.nn as nn

from mgbench.compat import ensure_autoattack_alias
from mgbench.data import class_list
from mgbench.data.imagenet1k import imagenet1k_class_index
from mgbench.errors import InputError
from mgbench.models._builder import ROBUSTBENCH_PREFIX as PREFIX
from mgbench.models._builder import LoadedModel, load_state, read_checkpoint, register_prefix_loader
from mgbench.provenance import sha256_file

if TYPE_CHECKING:
    from mgbench.data import DataSpec

THREAT_MODELS = ("Linf", "corruptions")
DIR_ENV = "MGBENCH_ROBUSTBENCH_DIR"
DEFAULT_DIR = Path("~/.cache/mgbench/robustbench")

# RobustBench's preprocessing names (zoo entries' "preprocessing") -> mgbench's recipes.
PREPROCESSING = {
    "Res256Crop224": "resize256-crop224",
    "Crop288": "crop288",
    "Res224": "resize224",
    "BicubicRes256Crop224": "bicubic-resize256-crop224",
}


def import_robustbench() -> Any:
    """Import robustbench (through the ``autoattack`` alias of :mod:`mgbench.compat`)."""
    ensure_autoattack_alias()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import robustbench
            import robustbench.utils  # noqa: F401  (the loader)
    except ImportError as exc:
        raise InputError(
            f"robustbench models need robustbench==1.1.1 (and setuptools<81): pip install 'mgbench[robustbench]' "
            f"({exc.__class__.__name__}: {exc})"
        ) from exc
    return robustbench


@dataclass(frozen=True)
class ZooEntry:
    """One ImageNet entry of RobustBench's model zoo."""

    name: str
    threat_model: str  # "Linf" or "corruptions"
    factory: Callable[[], nn.Module]
    gdrive_id: str | list[str] | None
    preprocessing: str | None  # an mgbench recipe, None where robustbench takes timm's config

    @property
    def spec(self) -> str:
        return f"{PREFIX}{self.threat_model}/{self.name}"

    @property
    def from_files(self) -> bool:
        """Whether robustbench loads the weights from its gdrive files (else torchvision/timm hub)."""
        return bool(self.gdrive_id)

    def weight_files(self, model_dir: Path) -> list[Path]:
        """The files robustbench reads, in its layout (``NAME.pt``; ensembles ``NAME.pt_m<i>.pt``)."""
        base = Path(model_dir) / "imagenet" / self.threat_model / f"{self.name}.pt"
        if isinstance(self.gdrive_id, list):
            return [Path(f"{base}_m{i}.pt") for i in range(len(self.gdrive_id))]
        return [base]


def zoo_entries() -> dict[tuple[str, str], ZooEntry]:
    """Every ImageNet Linf and corruptions entry, keyed by ``(threat_model, name)``."""
    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    entries = {}
    for threat in THREAT_MODELS:
        for name, info in model_dicts[BenchmarkDataset.imagenet][ThreatModel(threat)].items():
            recipe = PREPROCESSING.get(info.get("preprocessing") or "")
            entries[(threat, name)] = ZooEntry(name, threat, info["model"], info.get("gdrive_id"), recipe)
    return entries


def find_entry(spec: str) -> ZooEntry:
    """``NAME``, ``Linf/NAME`` or ``corruptions/NAME`` (with or without ``robustbench:``)."""
    text = spec.removeprefix(PREFIX)
    threat, _, name = text.rpartition("/")
    entries = zoo_entries()
    if threat and threat not in THREAT_MODELS:
        raise InputError(f"--model {spec}: RobustBench ImageNet threat models are {', '.join(THREAT_MODELS)}")
    for candidate in ([threat] if threat else THREAT_MODELS):
        if (candidate, name) in entries:
            return entries[(candidate, name)]
    close = difflib.get_close_matches(name, sorted({n for _, n in entries}), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise InputError(f"--model {spec}: no ImageNet model {name!r} in RobustBench's zoo{hint}")


@contextmanager
def _no_pretrained() -> Iterator[None]:
    """Build zoo entries without fetching weights: some factories call
    ``timm.create_model(..., pretrained=True)`` or torchvision's ``resnet50(pretrained=True)``."""
    from unittest import mock

    import timm
    import torchvision.models

    create, resnet50 = timm.create_model, torchvision.models.resnet50

    def create_untrained(*args: Any, **kwargs: Any) -> nn.Module:
        return create(*args, **{**kwargs, "pretrained": False})

    def resnet50_untrained(*args: Any, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return resnet50(*args, **{**kwargs, "weights": None})

    with mock.patch.object(timm, "create_model", create_untrained), \
            mock.patch.object(torchvision.models, "resnet50", resnet50_untrained):
        yield


def build_architecture(entry: ZooEntry) -> nn.Module:
    """The entry's module with untrained weights (nothing downloaded)."""
    import timm

    try:
        with _no_pretrained(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return entry.factory()
    except RuntimeError as exc:
        if "Unknown model" in str(exc):  # a timm name that timm does not have
            raise InputError(
                f"{entry.spec} cannot be built: robustbench 1.1.1 asks timm {timm.__version__} for a model it "
                f"does not have ({exc})"
            ) from exc
        raise


def model_dir() -> tuple[Path, bool]:
    """The RobustBench model directory and whether it is local-only (set by the user)."""
    configured = os.environ.get(DIR_ENV)
    return Path(os.path.expanduser(configured or DEFAULT_DIR)), bool(configured)


def state_hash(module: nn.Module) -> str:
    """sha256 of a module's state (names, shapes, bytes): the identity of hub-fetched weights."""
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _files_hash(files: list[Path]) -> str:
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()


def _is_normaliser_buffer(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("mean", "std", "mu", "sigma")


def _checked_load(module: nn.Module, model_name: str, state_dict: dict[str, torch.Tensor], dataset: Any) -> nn.Module:
    """Replaces ``robustbench.utils._safe_load_state_dict``: every parameter and buffer must come
    from the checkpoint, except the normalisation constants the architecture sets itself."""
    buffers = {name for name, _ in module.named_buffers()}
    result = module.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not (k in buffers and _is_normaliser_buffer(k))]
    if missing:
        more = f" (+{len(missing) - 3})" if len(missing) > 3 else ""
        raise InputError(f"{model_name}: the checkpoint lacks the keys {', '.join(missing[:3])}{more}")
    return module


def _load_weights(entry: ZooEntry, folder: Path, local_only: bool) -> tuple[nn.Module, str]:
    """The entry with its trained weights, and the weights' identity (sha256)."""
    files = entry.weight_files(folder)
    missing = [f for f in files if not f.is_file()]
    if not missing and not entry.from_files:
        module = build_architecture(entry)
        load_state(module, read_checkpoint(files[0], entry.spec), entry.spec)
        return module, sha256_file(files[0])
    if missing and local_only:
        raise InputError(
            f"{entry.spec}: weights file {missing[0]} does not exist: put RobustBench's checkpoint there "
            f"(layout DIR/imagenet/{entry.threat_model}/NAME.pt) or unset --robustbench-dir to download it"
        )
    import_robustbench()
    from unittest import mock

    import robustbench.utils

    try:
        with warnings.catch_warnings(), mock.patch.object(robustbench.utils, "_safe_load_state_dict", _checked_load):
            warnings.simplefilter("ignore")
            module = robustbench.utils.load_model(entry.name, model_dir=str(folder), dataset="imagenet",
                                                  threat_model=entry.threat_model)
    except InputError as exc:
        raise InputError(f"{entry.spec}: {files[0]} does not fit the architecture: {exc}") from exc
    except Exception as exc:  # downloads and checkpoints fail in many ways
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        where = f"downloading {entry.spec} failed" if missing else f"{entry.spec}: loading {files[0]} failed"
        raise InputError(
            f"{where} ({exc.__class__.__name__}: {first}): put the checkpoint at {files[0]}, or at "
            f"DIR/imagenet/{entry.threat_model}/{files[0].name} and pass --robustbench-dir DIR"
        ) from exc
    present = [f for f in files if f.is_file()]
    weights = _files_hash(present) if entry.from_files and len(present) == len(files) else state_hash(module)
    return module, weights


class ClassSubset(nn.Module):
    """Keeps the logits of ``indices`` (ImageNet-1k output positions of a class list); the same
    as slicing the rows of the classifier, for any architecture."""

    def __init__(self, module: nn.Module, indices: list[int]):
        super().__init__()
        self.module = module
        self.register_buffer("indices", torch.tensor(indices, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).index_select(1, self.indices)


def class_list_indices(class_list_name: str) -> list[int]:
    """ImageNet-1k output positions of a shipped class list (RobustBench's WNID map)."""
    index = imagenet1k_class_index()
    return [index[w] for w in class_list(class_list_name)]


@register_prefix_loader(PREFIX)
def load(spec: str, data: "DataSpec | None" = None) -> LoadedModel:
    """``robustbench:NAME`` as a :class:`LoadedModel`, adapted to ``data`` (ImageNet100: the
    class list's logits)."""
    if data is not None and data.name == "digits":
        raise InputError(f"{spec} is an ImageNet model: pass --data imagenet1k or imagenet100 with --data-root")
    entry = find_entry(spec)
    folder, local_only = model_dir()
    module, weights = _load_weights(entry, folder, local_only)
    module.eval()
    if data is not None and data.name == "imagenet100":
        module = ClassSubset(module, class_list_indices(data.class_list))
    return LoadedModel(module, f"{PREFIX}{entry.name}", entry.spec, weights)
