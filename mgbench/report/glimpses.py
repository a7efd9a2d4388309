"""Where an anytime model looks: a grid of images with each step's glimpse box and prediction.

Each panel shows one image (clean, corrupted or adversarial: whatever the condition returned,
i.e. exactly what the model saw), the glimpse box of every step drawn in that step's colour and
numbered, and a caption with the true class and the prediction after each step (green where
correct). Models that return attention maps instead (LTPA) get them as a heat overlay: each
level's map upsampled to the image and scaled to a maximum of 1, then averaged over the levels,
so every level counts alike whatever its resolution. Plain classifiers get the caption alone.

Glimpse statistics (:func:`location_stats`, ``mgbench glimpses --stats``): per step, the
distribution of the glimpse scale ``s`` and centre ``(tx, ty)`` (mean and quantiles) and the
share of glimpses with ``s > 0.49``, next to MGNet's ceiling 0.5, where the scale's sigmoid
saturates. A policy that always takes the largest crop shows there at a glance; the figure
carries the same numbers for its images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from mgbench.conditions import Clean, Condition, condition_label, condition_types, expand
from mgbench.data import DataSpec, class_list, make_loader, open_dataset
from mgbench.device import resolve_device, to_unit
from mgbench.errors import InputError
from mgbench.models import forward_steps, load_model
from mgbench.models.outputs import check_outputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
MAX_IMAGES = 64
MAX_STATS_IMAGES = 10_000
SATURATED_S = 0.49  # MGNet's scale lies in (0.2, 0.5); above this its sigmoid is within 2% of the top
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Positional arguments of the shorthand ``TYPE:ARG:ARG`` per condition type: (table key, is a list).
_POSITIONAL: dict[str, tuple[tuple[str, bool], ...]] = {
    "corruption": (("corruptions", True), ("severities", True)),
    "attack": (("attack", False), ("eps", False)),
}


def _value(text: str) -> Any:
    """A TOML value (``3``, ``0.5``, ``true``, ``[1, 2]``), else the text itself (``fog``, ``4/255``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# What an attack spec means when it does not say: the cross-entropy loss on the model as it is,
# without the verdict's probe cells (a suite table's defaults would expand to several attacks).
_ONE_ATTACK = {"loss": "ce", "variant": "default", "checks": False}


def parse_condition(spec: str) -> dict[str, Any]:
    """``TYPE[:ARG...][:KEY=VALUE...]`` -> a suite ``[[conditions]]`` table.

    ``corruption:fog:3`` -> ``{"type": "corruption", "corruptions": ["fog"], "severities": [3]}``;
    ``attack:pgd:4/255:steps=20`` -> ``{"type": "attack", "attack": "pgd", "eps": "4/255", "steps": 20}``
    plus, unless given, ``loss = "ce"``, ``variant = "default"`` and ``checks = false`` (one attack);
    any type takes ``KEY=VALUE`` items, e.g. ``clean``.
    """
    kind, *items = spec.split(":")
    if not kind:
        raise InputError(
            f"--condition {spec!r} names no type: write TYPE[:ARG...][:KEY=VALUE...], e.g. corruption:fog:3"
        )
    if kind not in condition_types():
        raise InputError(f"unknown condition type {kind!r}: use one of {', '.join(condition_types())}")
    table: dict[str, Any] = {"type": kind}
    positional = list(_POSITIONAL.get(kind, ()))
    for item in items:
        if "=" in item:
            key, _, text = item.partition("=")
            table[key] = _value(text)
        elif positional:
            key, as_list = positional.pop(0)
            value = _value(item)
            table[key] = [value] if as_list else value
        else:
            raise InputError(f"--condition {spec!r}: unexpected {item!r}; write further arguments as KEY=VALUE")
    if kind == "attack":  # one picture, one attack: not the suite's sweep of losses, variants and probes
        for key, value in _ONE_ATTACK.items():
            table.setdefault(key, value)
    return table


def one_condition(spec: str) -> Condition:
    """The single condition a spec expands to (through the registered condition types)."""
    conditions = expand(parse_condition(spec))
    if len(conditions) != 1:
        raise InputError(f"--condition {spec!r} expands to {len(conditions)} conditions: name exactly one")
    return conditions[0]


@dataclass
class GlimpseBatch:
    """What the figure shows: the images the model saw and its per-step outputs."""

    images: torch.Tensor  # [N, 3, H, W] in [0, 1]
    labels: torch.Tensor  # [N]
    predictions: torch.Tensor  # [T, N]
    boxes: torch.Tensor | None  # [T, N, 4] fractions (x0, y0, x1, y1), or None
    attention: torch.Tensor | None = None  # [N, H, W] in [0, 1]: the levels' maps combined, or None
    levels: int = 0  # how many attention maps were combined


@dataclass(frozen=True)
class StepStats:
    """The distribution of one glimpse step's scale and centre over the images."""

    step: int
    n: int
    s: tuple[float, ...]  # mean, then the QUANTILES
    tx: tuple[float, ...]
    ty: tuple[float, ...]
    saturated: float | None  # share of glimpses with s > SATURATED_S; None for the fixed whole-image glimpse


def glimpse_locations(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes (x0, y0, x1, y1) [..., 4] -> (s, tx, ty) [..., 3]: the inverse of MGNet's
    ``glimpse_boxes`` (a box spans ``(t -+ s + 1) / 2`` of the image)."""
    x0, y0, x1, y1 = boxes.double().unbind(-1)
    return torch.stack([x1 - x0, x0 + x1 - 1, y0 + y1 - 1], dim=-1)


def location_stats(boxes: torch.Tensor) -> list[StepStats]:
    """Per step of boxes [T, N, 4]: mean and quantiles of s, tx, ty, and the saturated share."""
    locations = glimpse_locations(boxes)
    quantiles = torch.tensor(QUANTILES, dtype=torch.float64)
    stats = []
    for step, values in enumerate(locations):
        summary = [tuple([float(v.mean())] + torch.quantile(v, quantiles).tolist()) for v in values.unbind(-1)]
        fixed = bool(torch.all(values[:, 0] == 1))  # MGNet's first glimpse: the whole image, s = 1
        saturated = None if fixed else float((values[:, 0] > SATURATED_S).double().mean())
        stats.append(StepStats(step + 1, values.shape[0], *summary, saturated))
    return stats


def stats_lines(stats: list[StepStats]) -> list[str]:
    """One compact line per step (for the figure): median [5%, 95%] of s, tx, ty and the saturated share."""
    def spread(values: tuple[float, ...]) -> str:
        return f"{values[3]:.2f} [{values[1]:.2f}, {values[5]:.2f}]"

    return [f"glimpse {st.step}: the whole image (s = 1)" if st.saturated is None else
            f"glimpse {st.step}: s {spread(st.s)}, s>{SATURATED_S} {100 * st.saturated:.0f}%, "
            f"tx {spread(st.tx)}, ty {spread(st.ty)}" for st in stats]


def combine_maps(maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """[B, h, w] maps of any resolutions -> one [B, H, W] map: each upsampled (bilinear) and divided
    by its per-image maximum, then averaged over the maps."""
    scaled = []
    for level in maps:
        up = nn.functional.interpolate(level[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
        scaled.append(up / up.flatten(1).amax(1).clamp_min(1e-12)[:, None, None])
    return torch.stack(scaled).mean(0)


def observe(model: nn.Module, condition: Condition, x: torch.Tensor, y: torch.Tensor,
            ids: torch.Tensor) -> GlimpseBatch:
    """Apply ``condition`` to the batch, then run a fresh forward pass on the result."""
    model.eval()
    if condition.needs_grad:
        seen = condition.apply(model, x, y, ids)
    else:
        with torch.no_grad():
            seen = condition.apply(model, x, y, ids)
    seen = seen.detach()
    with torch.no_grad():
        outputs = forward_steps(model, seen)
    boxes = outputs.boxes.cpu() if outputs.boxes is not None else None
    maps = outputs.maps or []
    attention = combine_maps(maps, tuple(seen.shape[-2:])).cpu() if maps else None
    return GlimpseBatch(seen.cpu().clamp(0, 1), y.cpu(), outputs.logits.argmax(-1).cpu(), boxes, attention, len(maps))


# Where step t's number sits on its box, cycling through the corners (x, y as fractions of the box,
# and the text alignment), so the numbers of boxes that nearly coincide (late glimpses) never overlap.
_CORNERS = ((0.0, 0.0, "left", "top"), (1.0, 0.0, "right", "top"), (1.0, 1.0, "right", "bottom"),
            (0.0, 1.0, "left", "bottom"))


def condition_title(condition: Condition) -> str:
    """A condition as a figure title names it: ``pgd linf 4/255, 20 steps``, ``fog s3``, ``clean``."""
    key = condition.key
    extras = [f"{key[k]} {k}" for k in ("steps", "restarts") if isinstance(key.get(k), int) and key[k] > 1]
    return ", ".join([condition_label(key), *extras])


def draw(batch: GlimpseBatch, class_names: list[str], out: Path, title: str) -> Path:
    """Write the grid figure to ``out`` (PNG, PDF or SVG)."""
    fig = figure(batch, class_names, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight", metadata={"Software": None} if out.suffix == ".png" else None)
    return out


def figure(batch: GlimpseBatch, class_names: list[str], title: str) -> "Figure":
    """The grid figure: every image with its glimpse boxes (or attention) and predictions."""
    # The object-oriented API: no pyplot state, no change of the caller's backend.
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    n = batch.images.shape[0]
    steps = batch.predictions.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    colours = colormaps["autumn"](torch.linspace(0, 0.85, steps).tolist())
    # "glimpse:class" under each image: one line, or two for long class names (WNIDs).
    long_names = max(len(name) for name in class_names) > 4
    per_line = math.ceil(steps / 2) if long_names else steps
    lines = math.ceil(steps / per_line)
    fig = Figure(figsize=(2.6 * cols, (2.9 + 0.2 * lines) * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= n:
            continue
        image = batch.images[index].permute(1, 2, 0).numpy()
        height, width = image.shape[:2]
        ax.imshow(image, interpolation="nearest")
        if batch.attention is not None:
            ax.imshow(batch.attention[index].numpy(), cmap="inferno", alpha=0.55, vmin=0, vmax=1,
                      interpolation="bilinear")
        if batch.boxes is not None:
            for step in range(steps):
                # Box fractions are in align_corners=True coordinates: 0 and 1 are the centres of the
                # first and last pixel, which imshow puts at 0 and size - 1.
                x0, y0, x1, y1 = batch.boxes[step, index].tolist()
                left, top = x0 * (width - 1), y0 * (height - 1)
                ax.add_patch(Rectangle((left, top), (x1 - x0) * (width - 1), (y1 - y0) * (height - 1),
                                       fill=False, edgecolor=colours[step], linewidth=1.6))
                fx, fy, ha, va = _CORNERS[step % len(_CORNERS)]
                ax.text(left + fx * (x1 - x0) * (width - 1), top + fy * (y1 - y0) * (height - 1), str(step + 1),
                        color="black", fontsize=7, va=va, ha=ha,
                        bbox={"facecolor": colours[step], "edgecolor": "none", "pad": 0.6})
        truth = int(batch.labels[index])
        ax.set_title(f"true {class_names[truth]}", fontsize=8)
        guesses = [int(p) for p in batch.predictions[:, index]]
        for step, guess in enumerate(guesses):
            line, slot = divmod(step, per_line)
            text = f"{step + 1}:{class_names[guess]}" if steps > 1 else class_names[guess]
            ax.text((slot + 0.5) / per_line, -0.03 - 0.09 * line, text, transform=ax.transAxes, ha="center",
                    va="top", fontsize=7, color="green" if guess == truth else "red")
    label = "glimpse:prediction after each glimpse (green: correct)" if steps > 1 else "prediction (green: correct)"
    if batch.attention is not None:
        label += f"; overlay: attention, mean of {batch.levels} level maps each scaled to max 1"
    if batch.boxes is not None and steps > 1:  # where the glimpses go: median [5%, 95%] over these images
        label += "\n" + "\n".join(stats_lines(location_stats(batch.boxes)))
    fig.suptitle(f"{title}\n{label}", fontsize=9)
    fig.tight_layout(h_pad=1.2 * lines)
    return fig


def _observed_batches(model_name: str, data: DataSpec, n: int, condition: str | None, device: str,
                      batch_size: int = MAX_IMAGES) -> tuple[Any, Condition, list[GlimpseBatch]]:
    """The first ``n`` images of ``data`` (a fixed seeded subset) under ``condition``, observed
    through ``model_name`` in batches: (loaded model, condition, batches)."""
    chosen = one_condition(condition) if condition else Clean()
    loaded = load_model(model_name)
    loaded.check_dataset(data)
    dev = resolve_device(device)
    subset = replace(data, limit=n)
    open_data = getattr(chosen, "open_data", None)
    opened = open_data(subset) if open_data is not None else open_dataset(subset)
    model = loaded.module.to(dev)
    batches = []
    for images, labels, ids, _ in make_loader(opened.dataset, batch_size, device=dev, workers=0):
        if images is not None:
            if not batches:  # outputs checked before anything is drawn, as every other command does
                check_outputs(model.eval(), loaded.name, to_unit(images[:4], dev), data.num_classes)
            batches.append(observe(model, chosen, to_unit(images, dev), labels.to(dev), ids))
    if not batches:
        raise InputError("no readable image among the chosen ones: check --data-root")
    return loaded, chosen, batches


def glimpse_picture(model_name: str, data: DataSpec, out: Path, *, n: int = 16, condition: str | None = None,
                    device: str = "auto") -> Path:
    """Draw ``n`` images of ``data`` (a fixed seeded subset) under ``condition`` (a spec for
    :func:`parse_condition`; clean when None) with ``model_name``'s glimpses, into ``out``."""
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise InputError(f"--out {out} must end in {', '.join(FIGURE_SUFFIXES)}: choose a figure file name")
    if not 1 <= n <= MAX_IMAGES:
        raise InputError(f"--n must lie in 1..{MAX_IMAGES}, not {n}")
    loaded, chosen, (batch,) = _observed_batches(model_name, data, n, condition, device)
    names = [str(i) for i in range(10)] if data.name == "digits" else class_list(data.class_list)
    return draw(batch, names, out, f"{loaded.name} on {data.label} ({condition_title(chosen)})")


def glimpse_stats(model_name: str, data: DataSpec, *, n: int = 500, condition: str | None = None,
                  device: str = "auto") -> list[StepStats]:
    """Per-step scale and location statistics of ``model_name``'s glimpses on ``n`` images of
    ``data`` (a fixed seeded subset) under ``condition``; an InputError for a model without glimpses."""
    if not 1 <= n <= MAX_STATS_IMAGES:
        raise InputError(f"--n must lie in 1..{MAX_STATS_IMAGES} for --stats, not {n}")
    loaded, _, batches = _observed_batches(model_name, data, n, condition, device)
    if any(batch.boxes is None for batch in batches):
        raise InputError(f"{loaded.name} takes no glimpses (no boxes): --stats needs a glimpse model such as MGNet")
    return location_stats(torch.cat([batch.boxes for batch in batches if batch.boxes is not None], dim=1))
