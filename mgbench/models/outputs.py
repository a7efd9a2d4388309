"""The output contract every model is held to before anything is counted.

A classifier's ``forward`` returns one row of K finite class logits per image, shape (N, K),
with K the classes of the data; an anytime model's ``forward_steps`` returns them per step,
logits of shape (T, N, K) with T its ``num_steps``. A model that breaks the contract (7
logits for 10 classes, NaN, a tuple) would otherwise be scored like a poor classifier or crash
deep inside the counting code, so the runner checks a small probe batch before the store is
opened (:func:`check_outputs`) and every evaluated batch as it is counted (:func:`check_batch`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mgbench.errors import InputError
from mgbench.models.anytime import num_steps


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def logits_problem(value: object, expected: tuple[int, ...]) -> str | None:
    """What is wrong with ``value`` as logits of shape ``expected``, or None. The finiteness
    check costs one reduction and reads one bool back from the device."""
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}, not a tensor of logits"
    if tuple(value.shape) != expected:
        return f"logits of shape {_shape(value.shape)}, not {_shape(expected)}"
    if bool(torch.isfinite(value).all()):
        return None
    bad = int((~torch.isfinite(value)).sum())
    return f"{bad} NaN or infinite value(s) among its {value.numel()} logits"


def _is_anytime(module: nn.Module) -> bool:
    return getattr(module, "forward_steps", None) is not None


def _contract(module: nn.Module, num_classes: int) -> str:
    if _is_anytime(module):
        return f"its forward_steps must return finite logits of shape ({num_steps(module)} steps, N, {num_classes})"
    return f"its forward must return finite logits of shape (N, {num_classes})"


def check_outputs(module: nn.Module, name: str, images: torch.Tensor, num_classes: int) -> None:
    """Run ``images`` (a few [0, 1] images on the model's device) through ``forward`` and, for an
    anytime model, ``forward_steps``; raise :class:`InputError` naming ``name`` and the problem."""
    n = images.shape[0]
    where = f"model {name}"
    try:
        with torch.no_grad():
            problem = logits_problem(module(images), (n, num_classes))
            if problem is None and _is_anytime(module):
                where = f"model {name} (forward_steps)"
                outputs = module.forward_steps(images)
                problem = logits_problem(getattr(outputs, "logits", outputs), (num_steps(module), n, num_classes))
    except InputError:
        raise
    except Exception as exc:  # the model's own code failed: name it, keep the cause for --debug
        first = next((line for line in str(exc).splitlines() if line.strip()), "").strip()
        raise InputError(
            f"{where} failed on a batch of {n} images of the data ({exc.__class__.__name__}: {first}): "
            "fix the model or pass data it takes (--debug shows the traceback)"
        ) from exc
    if problem is not None:
        raise InputError(f"{where} returns {problem}, for a batch of {n} images of {num_classes} classes: "
                         f"{_contract(module, num_classes)}")


def check_batch(
    step_logits: torch.Tensor, batch: int, module: nn.Module, name: str, num_classes: int, where: str
) -> None:
    """Check the [T, B, K] logits of one evaluated batch of ``batch`` images (``forward_steps``'
    output) before they are counted. A plain model's logits are reported in its own (B, K) shape."""
    if _is_anytime(module):
        problem = logits_problem(step_logits, (num_steps(module), batch, num_classes))
    else:
        problem = logits_problem(step_logits[0], (batch, num_classes))
    if problem is not None:
        raise InputError(f"model {name} returns {problem} on {where}: {_contract(module, num_classes)}; "
                         "nothing of this cell was stored")
