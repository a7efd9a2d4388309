"""Corruption names, groups, severities and the per-image seed.

The names are those of ImageNet-C / imagecorruptions: 15 *common* corruptions (the benchmark)
and 4 *extra* ones (ImageNet-C's validation corruptions, for tuning without touching the test
set). Severities are 1..5.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from mgbench.errors import InputError

COMMON: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL: tuple[str, ...] = COMMON + EXTRA
GROUPS: dict[str, tuple[str, ...]] = {"common": COMMON, "extra": EXTRA, "all": ALL}
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# ImageNet-C's four families (for display).
FAMILY: dict[str, str] = {
    **dict.fromkeys(("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"), "noise"),
    **dict.fromkeys(("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"), "blur"),
    **dict.fromkeys(("snow", "frost", "fog", "brightness", "spatter"), "weather"),
    **dict.fromkeys(("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"), "digital"),
}


def parse_corruptions(value: str | Iterable[str]) -> list[str]:
    """Names from a group (``common``, ``extra``, ``all``), a comma-separated string or a list;
    order kept, duplicates dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"corruption names must be strings, not {item!r}: use e.g. \"gaussian_noise\"")
        item = item.strip()
        if not item:
            continue
        if item in GROUPS:
            names.extend(GROUPS[item])
        elif item in ALL:
            names.append(item)
        else:
            raise InputError(
                f"unknown corruption {item!r}: use common, extra, all or names from `mgbench corruptions list`"
            )
    if not names:
        raise InputError("no corruption named: use common, extra, all or a comma-separated list of names")
    return list(dict.fromkeys(names))


def _severity(token: object) -> int:
    if isinstance(token, bool) or not isinstance(token, (int, str)):
        raise InputError(f"severity {token!r} is not a whole number: use 1..5, e.g. \"1-5\" or \"1,3,5\"")
    try:
        level = int(token)
    except ValueError:
        raise InputError(f"severity {token!r} is not a whole number: use 1..5, e.g. \"1-5\" or \"1,3,5\"") from None
    if level not in SEVERITIES:
        raise InputError(f"severity {level} is out of range: use 1..5, e.g. \"1-5\" or \"1,3,5\"")
    return level


def parse_severities(value: str | int | Iterable[int | str]) -> list[int]:
    """Severities from ``"1-5"``, ``"1,3,5"``, ``"2"``, an int or a list; sorted, unique."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        parts = str(value).split(",")
    else:
        try:
            parts = list(value)  # type: ignore[arg-type]
        except TypeError:
            raise InputError(f"severities {value!r} not understood: use e.g. \"1-5\" or \"1,3,5\"") from None
    levels: list[int] = []
    for part in parts:
        if isinstance(part, str) and "-" in part.strip().lstrip("-"):
            low, _, high = part.strip().partition("-")
            first, last = _severity(low.strip()), _severity(high.strip())
            if first > last:
                raise InputError(f"severity range {part!r} runs backwards: write it low-high, e.g. \"1-5\"")
            levels.extend(range(first, last + 1))
        elif isinstance(part, str) and not part.strip():
            continue
        else:
            levels.append(_severity(part.strip() if isinstance(part, str) else part))
    if not levels:
        raise InputError("no severity given: use 1..5, e.g. \"1-5\" or \"1,3,5\"")
    return sorted(set(levels))


def seed_for(image_id: int | str, corruption: str, severity: int) -> int:
    """The seed of one image under one corruption and severity: a stable hash (sha256, not
    Python's salted ``hash``), in [0, 2**32) so that ``np.random.seed`` accepts it. The image id
    is the dataset index the runner passes to ``apply``; seeds do not depend on the batch."""
    text = f"{image_id}/{corruption}/{int(severity)}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")
