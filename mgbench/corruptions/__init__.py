"""Common corruptions (ImageNet-C): names, a deterministic reference backend
(imagecorruptions), a fast batched torch backend, the ``corruption`` condition type with its
summaries (mean accuracy, CE, mCE) and ImageNet100-C generation. See docs/corruptions.md."""

from mgbench.corruptions import condition  # noqa: F401  (registers the corruption condition type)
from mgbench.corruptions.names import (
    ALL,
    COMMON,
    EXTRA,
    GROUPS,
    SEVERITIES,
    parse_corruptions,
    parse_severities,
    seed_for,
)
from mgbench.corruptions.reference import ReferenceBackend
from mgbench.corruptions.scaling import RESAMPLED, SCALINGS, corrupt_scaled
from mgbench.corruptions.torch_backend import TorchBackend

__all__ = [
    "ALL", "COMMON", "EXTRA", "GROUPS", "RESAMPLED", "SCALINGS", "SEVERITIES", "ReferenceBackend",
    "TorchBackend", "corrupt_scaled", "parse_corruptions", "parse_severities", "seed_for",
]
