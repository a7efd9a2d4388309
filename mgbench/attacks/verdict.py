"""Gradient-masking verdicts and the per-example worst case, computed after a model's attack
cells are stored (the ``attack`` summary; recomputed on every run).

For every norm the honest sweep used, the summary stores

- one ``worst-case`` cell per eps: ``top1`` = share of examples that *every* honest attack at
  that eps (white-box, adaptive variants, transfer, AutoAttack, and the probes below) left
  correctly classified, on the examples all of them evaluated;
- one ``verdict`` cell: ``unreliable`` (1 or 0) with the reasons, and one ``check:<name>`` row
  per check with its statistic, interval and explanation.

The checks follow Carlini et al. (2019), "On Evaluating Adversarial Robustness", and
AutoAttack's flags. Besides the stored cells they run a few probes on the same data:

==================  ======================================================================
check               fails when
==================  ======================================================================
logits              the outputs look like probabilities (in [0, 1], rows sum to 1)
randomised          two forward passes of one batch differ, and no AutoAttack ``rand`` ran
zero-gradients      examples whose input gradient of the cross-entropy is exactly zero
monotone-eps        examples an attack breaks at a smaller eps survive it at a larger eps
chance-level        PGD at a huge eps (L-inf 0.5, L2 0.5*sqrt(dim): every image can be moved
                    to mid-grey), without random start, leaves accuracy above chance (1/K)
pgd-vs-fgsm         examples FGSM breaks survive PGD (same eps)
converged           PGD with twice the steps (half the step) and 2 more random restarts
                    breaks examples the sweep's PGD left correct (at the reference eps)
square              the gradient-free Square attack breaks examples every white-box attack
                    left correct (reference eps)
noise               random noise of the same norm and size (10 draws: random-sign corners
                    of the L-inf box, random directions on the L2 sphere) does
transfer            a transfer attack breaks examples the white-box attacks left correct
adaptive            an adaptive variant (rescaler-off, all-glimpses) breaks examples the
                    default white-box attacks left correct
autoattack-flags    pyautoattack's own checks logged a warning
==================  ======================================================================

Margins. Comparisons are per example. For "attack A must not beat attack B" we count the
examples A breaks and B leaves correct, ``u`` of ``n``, and fail when the lower end of the 95%
Wilson interval of ``u / n`` exceeds ``TOLERANCE`` (1 percentage point): a failure is
statistically significant evidence that B misses at least 1% of the data that A finds, while a
handful of examples (attack randomness) passes: u >= 3 at n = 100, 17 at n = 1,000, 64 at
5,000. The same rule applies to the zero-gradient share; chance-level fails when the lower end
of the interval of the large-eps accuracy exceeds 1/K.

The *reference eps* (square, noise, converged) is the largest eps of the sweep at which the
white-box attacks leave some example correct: there the remaining examples are the ones a
masked gradient would protect, and the probes run only on them (a cascade, like AutoAttack's).
Results of the ``mgnet-paper`` protocol are not judged (a different threat model).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from mgbench import progress
from mgbench.attacks.autoattack import run_autoattack
from mgbench.attacks.bounds import check_ball
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.gradient import default_step_size, pgd
from mgbench.attacks.variants import DEFAULT, TRANSFER_PREFIX
from mgbench.conditions import Summary, SummaryContext, register_summary
from mgbench.metrics import binomial_ci
from mgbench.store import MetricRow

TOLERANCE = 0.01
LARGE_EPS_LINF = 0.5
LARGE_EPS_STEPS = 20
NOISE_DRAWS = 10
SQUARE_QUERIES = 1000
PROBE_SEED = 0
# Bump when a change moves the worst cases or the verdict (2: fed every stored attack cell of the
# model, data and run options, whichever suite wrote it).
SUMMARY_VERSION = 2


@dataclass
class StoredAttack:
    """One stored attack cell, as the summary needs it."""

    attack: str
    protocol: str
    variant: str
    norm: str
    eps: float
    eps_str: str
    steps: int | None
    step_size: float | None
    restarts: int | None
    random_start: bool | None
    examples: ExampleSet | None
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        text = f"{self.attack} {self.eps_str}"
        if self.attack == "pgd":
            text += f" ({self.steps} steps, {self.restarts} restart{'s' if self.restarts != 1 else ''})"
        return text + ("" if self.variant == DEFAULT else f" [{self.variant}]")

    @property
    def transfer(self) -> bool:
        return self.variant.startswith(TRANSFER_PREFIX)

    @property
    def white_box(self) -> bool:
        return not self.transfer

    @property
    def series(self) -> tuple[Any, ...]:
        """Cells of one series differ only in eps (and the eps-dependent default step size)."""
        return (self.attack, self.variant, self.steps, self.restarts, self.random_start)


def _optional(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def read_attacks(frame: pd.DataFrame) -> list[StoredAttack]:
    """The attack cells among a summary context's rows."""
    out = []
    cells = frame[frame["threat"].isin(["linf", "l2"]) & frame["attack"].notna()]
    for _, cell in cells.groupby("cell_key", sort=False):
        final = {row.metric: row for row in cell[cell["step"].isna()].itertuples()}
        if "per_example" not in final:
            continue
        first = cell.iloc[0]
        examples = None
        detail = final["per_example"].detail
        if isinstance(detail, str):
            try:
                examples = ExampleSet.from_detail(json.loads(detail))
            except (KeyError, ValueError, TypeError):
                examples = None
        warnings: dict[str, int] = {}
        checks = final.get("autoattack_checks")
        if checks is not None and isinstance(checks.detail, str):
            warnings = json.loads(checks.detail).get("warnings", {})
        steps, restarts, random_start = (_optional(first[k]) for k in ("steps", "restarts", "random_start"))
        out.append(StoredAttack(
            attack=first["attack"], protocol=first["protocol"] or "honest", variant=first["variant"] or DEFAULT,
            norm=first["norm"] or first["threat"], eps=float(first["eps"]), eps_str=first["eps_str"],
            steps=None if steps is None else int(steps), step_size=_optional(first["step_size"]),
            restarts=None if restarts is None else int(restarts),
            random_start=None if random_start is None else bool(random_start),
            examples=examples, warnings=warnings,
        ))
    return out


# ----------------------------------------------------------------------------- checks

@dataclass
class Check:
    """One check's outcome. ``passed`` is None when it could not run (and then never fails)."""

    name: str
    passed: bool | None
    reason: str
    value: float | None = None
    n: int | None = None
    interval: tuple[float, float] | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> MetricRow:
        low, high = self.interval if self.interval else (None, None)
        value = self.value if self.value is not None else float("nan")
        return MetricRow(f"check:{self.name}", value, low, high, self.n,
                         detail={"passed": self.passed, "reason": self.reason, **self.detail})


def beats(broken_only_by_a: int, n: int) -> tuple[bool, tuple[float, float]]:
    """The margin rule: A beats B when the lower end of the 95% Wilson interval of the share of
    examples only A breaks exceeds ``TOLERANCE``."""
    interval = binomial_ci(broken_only_by_a, n)
    return interval[0] > TOLERANCE, interval


def unique_breaks(a: ExampleSet, b: ExampleSet) -> tuple[int, int]:
    """(examples A breaks and B leaves correct, examples both evaluated)."""
    both = a.worst_with(b).members
    size = both.size
    a_correct, b_correct = a.resized(size).correct, b.resized(size).correct
    return int((both & ~a_correct & b_correct).sum()), int(both.sum())


def compare(name: str, a: ExampleSet, b: ExampleSet, a_label: str, b_label: str, what: str) -> Check:
    """"A must not beat B" for two per-example sets."""
    u, n = unique_breaks(a, b)
    if n == 0:
        return Check(name, None, f"{a_label} and {b_label} share no examples")
    failed, interval = beats(u, n)
    reason = (f"{a_label} breaks {u}/{n} examples ({100 * u / n:.1f}%) that {b_label} left correct"
              + (f": {what}" if failed else ""))
    return Check(name, not failed, reason, u / n, n, interval,
                 {"a": a_label, "b": b_label, "broken_only_by_a": u, "tolerance": TOLERANCE})


def worst_of(checks: list[Check], name: str, none_reason: str) -> Check:
    """Several comparisons of one kind -> the failing one with the largest statistic, else the
    passing one with the largest statistic (all comparisons listed in the detail)."""
    ran = [c for c in checks if c.passed is not None]
    if not ran:
        return Check(name, None, none_reason)
    failed = [c for c in ran if not c.passed]
    pick = max(failed or ran, key=lambda c: c.value or 0.0)
    return Check(name, pick.passed, pick.reason, pick.value, pick.n, pick.interval,
                 {**pick.detail, "comparisons": [c.reason for c in ran]})


def _worst_case(cells: list[StoredAttack]) -> ExampleSet | None:
    sets = [c.examples for c in cells if c.examples is not None]
    if not sets:
        return None
    out = sets[0]
    for other in sets[1:]:
        out = out.worst_with(other)
    return out


# ----------------------------------------------------------------------------- probes

@dataclass
class ModelFacts:
    """Norm-independent facts from one pass over the data."""

    probabilities: bool
    randomised: bool
    clean: ExampleSet
    zero_grad: int
    n: int


def _batches(ctx: SummaryContext) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """The evaluation data as [0, 1] tensors on the device, with dataset indices."""
    from mgbench.data import make_loader
    from mgbench.runner import to_unit

    loader = make_loader(ctx.opened.dataset, ctx.batch_size, device=ctx.device, workers=0)
    for images, labels, ids, _ in progress.track(loader, "verdict checks: batch"):
        if images is None:
            continue
        yield to_unit(images, ctx.device), labels.to(ctx.device), ids.numpy()


def model_facts(model: nn.Module, ctx: SummaryContext) -> ModelFacts:
    probabilities = randomised = False
    ids_all, clean_all = [], []
    zero = n = 0
    for index, (x, y, ids) in enumerate(_batches(ctx)):
        with torch.no_grad():
            out = model(x)
            if index == 0:
                again = model(x)
                randomised = bool((out - again).abs().max() > 1e-4 * (1 + out.abs().max()))
                probabilities = bool(out.min() > -1e-5 and out.max() < 1 + 1e-5
                                     and ((out.sum(dim=1) - 1).abs() < 1e-4).all())
        ids_all.append(ids)
        clean_all.append((out.argmax(dim=1) == y).cpu().numpy())
        x_grad = x.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x_grad), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_grad)
        zero += int((grad.flatten(1).abs().sum(dim=1) == 0).sum())
        n += len(y)
    clean = ExampleSet.from_ids(np.concatenate(ids_all), np.concatenate(clean_all))
    return ModelFacts(probabilities, randomised, clean, zero, n)


def _noise(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return x + eps * torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype).mul_(2).sub_(1)
    direction = torch.randn_like(x)
    direction /= direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
    return x + eps * direction


@dataclass
class NormProbes:
    large_eps: float
    large: ExampleSet
    square: ExampleSet | None = None
    noise: ExampleSet | None = None
    stronger: ExampleSet | None = None
    stronger_settings: dict[str, Any] | None = None


def run_probes(model: nn.Module, ctx: SummaryContext, norm: str, ref_eps: float | None,
               survivors: ExampleSet | None, base: StoredAttack | None, square_queries: int) -> NormProbes:
    """One pass over the data: large-eps PGD on everything; at the reference eps Square and
    noise on the white-box survivors, a stronger PGD on the survivors of the sweep's PGD."""
    ids_all: list[np.ndarray] = []
    large_all, square_all, noise_all, stronger_all = [], [], [], []
    large_eps = LARGE_EPS_LINF
    settings = None
    if base is not None and base.steps and base.step_size:
        settings = {"steps": 2 * base.steps, "step_size": base.step_size / 2, "restarts": (base.restarts or 1) + 2,
                    "random_start": True}
    for x, y, ids in _batches(ctx):
        dims = x[0].numel()
        large_eps = LARGE_EPS_LINF if norm == "linf" else LARGE_EPS_LINF * math.sqrt(dims)
        ids_all.append(ids)
        adv = pgd(model, x, y, norm=norm, eps=large_eps, steps=LARGE_EPS_STEPS,
                  step_size=default_step_size(large_eps, LARGE_EPS_STEPS), random_start=False)
        with torch.no_grad():
            large_all.append((model(adv).argmax(dim=1) == y).cpu().numpy())
        for store, members, attack in (
            (square_all, survivors, "square"), (noise_all, survivors, "noise"),
            (stronger_all, base.examples if base is not None and settings else None, "stronger"),
        ):
            if members is None or ref_eps is None:
                continue
            alive, evaluated = _lookup(members.correct, ids), _lookup(members.members, ids)
            correct = np.zeros(len(ids), dtype=bool)
            if alive.any():
                index = torch.from_numpy(np.flatnonzero(alive)).to(x.device)
                correct[alive] = _attack_subset(model, x[index], y[index], norm, ref_eps, attack, square_queries,
                                                settings)
            store.append((ids[evaluated], correct[evaluated]))
    ids = np.concatenate(ids_all)

    def collect(parts: list[tuple[np.ndarray, np.ndarray]]) -> ExampleSet | None:
        if not parts:
            return None
        return ExampleSet.from_ids(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    return NormProbes(large_eps, ExampleSet.from_ids(ids, np.concatenate(large_all)), collect(square_all),
                      collect(noise_all), collect(stronger_all), settings)


def _lookup(mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``mask[ids]``, False for ids beyond the mask."""
    inside = ids < mask.size
    out = np.zeros(len(ids), dtype=bool)
    out[inside] = mask[ids[inside]]
    return out


def _attack_subset(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float, attack: str,
                   square_queries: int, settings: dict[str, Any] | None) -> np.ndarray:
    """Per-example correctness after a probe on examples that are correct so far."""
    if attack == "noise":
        correct = torch.ones(len(y), dtype=torch.bool, device=y.device)
        with torch.no_grad():
            for _ in range(NOISE_DRAWS):
                noisy = _noise(x, eps, norm).clamp_(0, 1)
                check_ball(noisy, x, norm=norm, eps=eps, what="noise probe")
                correct &= model(noisy).argmax(dim=1) == y
        return correct.cpu().numpy()
    if attack == "square":
        adv = run_autoattack(model, x, y, norm=norm, eps=eps, version="custom", attacks=("square",),
                             seed=PROBE_SEED, square_queries=square_queries).x_adv
    else:
        assert settings is not None
        adv = pgd(model, x, y, norm=norm, eps=eps, **settings)
    check_ball(adv, x, norm=norm, eps=eps, what=f"{attack} probe")
    with torch.no_grad():
        return (model(adv).argmax(dim=1) == y).cpu().numpy()


# ----------------------------------------------------------------------------- the summary

def _settings(tables: list[dict[str, Any]]) -> tuple[bool, int]:
    checks = any(t.get("checks", True) for t in tables) if tables else True
    queries = max((t.get("square_queries") or SQUARE_QUERIES for t in tables), default=SQUARE_QUERIES)
    return checks, queries


def _reference_eps(cells: list[StoredAttack]) -> tuple[float | None, ExampleSet | None]:
    """The largest eps whose white-box worst case leaves an example correct (else the smallest)."""
    by_eps: dict[float, ExampleSet] = {}
    for eps in sorted({c.eps for c in cells if c.white_box}):
        worst = _worst_case([c for c in cells if c.white_box and c.eps == eps])
        if worst is not None:
            by_eps[eps] = worst
    if not by_eps:
        return None, None
    alive = [eps for eps, worst in by_eps.items() if worst.n_correct > 0]
    eps = max(alive) if alive else min(by_eps)
    return eps, by_eps[eps]


def _base_pgd(cells: list[StoredAttack], eps: float | None) -> StoredAttack | None:
    candidates = [c for c in cells if c.attack == "pgd" and c.variant == DEFAULT and c.eps == eps
                  and c.examples is not None]
    return max(candidates, key=lambda c: (c.steps or 0) * (c.restarts or 1), default=None)


def _verdict_checks(cells: list[StoredAttack], facts: ModelFacts, probes: NormProbes | None, ref_eps: float | None,
                    survivors: ExampleSet | None, base: StoredAttack | None, num_classes: int) -> list[Check]:
    checks: list[Check] = []
    checks.append(Check("logits", not facts.probabilities,
                        "the model outputs probabilities, not logits: cross-entropy on them saturates and "
                        "masks gradients" if facts.probabilities else "the outputs are not probabilities"))
    eot = any(c.attack == "autoattack-rand" for c in cells)
    checks.append(Check(
        "randomised", not facts.randomised or eot,
        ("the model is randomised (two forward passes of one batch differ)"
         + (": evaluated with AutoAttack rand (EOT)" if eot else ": single-sample gradients and accuracies "
            "vary; evaluate with AutoAttack version rand (EOT)")) if facts.randomised else "the model is deterministic",
    ))
    failed, interval = beats(facts.zero_grad, facts.n)
    checks.append(Check("zero-gradients", not failed,
                        f"{facts.zero_grad}/{facts.n} examples have an exactly zero input gradient"
                        + (": gradient attacks cannot move them" if failed else ""),
                        facts.zero_grad / facts.n, facts.n, interval, {"tolerance": TOLERANCE}))

    monotone = []
    for series in {c.series for c in cells if c.white_box}:
        members = sorted((c for c in cells if c.series == series and c.examples is not None), key=lambda c: c.eps)
        for small, large in zip(members, members[1:]):
            monotone.append(compare("monotone-eps", small.examples, large.examples, small.label, large.label,
                                    "accuracy does not fall monotonically with eps"))
    checks.append(worst_of(monotone, "monotone-eps", "needs one attack at two or more eps"))

    if probes is not None:
        low, high = binomial_ci(probes.large.n_correct, probes.large.n)
        chance = 1 / num_classes
        accuracy = probes.large.n_correct / max(probes.large.n, 1)
        failed = low > chance
        checks.append(Check(
            "chance-level", not failed,
            f"PGD at eps {probes.large_eps:.3g} ({LARGE_EPS_STEPS} steps, no random start) leaves "
            f"{100 * accuracy:.1f}% correct, chance is {100 * chance:.0f}%"
            + (": the gradients do not lead across the decision boundary" if failed else ""),
            accuracy, probes.large.n, (low, high), {"eps": probes.large_eps, "chance": chance},
        ))

    pairs = []
    for pgd_cell in (c for c in cells if c.attack == "pgd" and c.variant == DEFAULT and c.examples is not None):
        for fgsm_cell in (c for c in cells if c.attack == "fgsm" and c.variant == DEFAULT and c.eps == pgd_cell.eps
                          and c.examples is not None):
            pairs.append(compare("pgd-vs-fgsm", fgsm_cell.examples, pgd_cell.examples, fgsm_cell.label,
                                 pgd_cell.label, "multi-step PGD does worse than single-step FGSM"))
    checks.append(worst_of(pairs, "pgd-vs-fgsm", "needs FGSM and PGD at the same eps"))

    if probes is not None and probes.stronger is not None and base is not None and base.examples is not None:
        stronger = base.examples.worst_with(probes.stronger)
        check = compare("converged", stronger, base.examples, "PGD with 2x steps and 2 more restarts", base.label,
                        "the attack has not converged")
        check.detail["stronger"] = probes.stronger_settings
        checks.append(check)
    else:
        checks.append(Check("converged", None, "needs a PGD cell at the reference eps"))

    for name, probe, label, what in (
        ("square", probes.square if probes else None, "Square (gradient-free)",
         "a black-box attack beats the white-box attacks (gradient masking)"),
        ("noise", probes.noise if probes else None, f"random noise ({NOISE_DRAWS} draws)",
         "random noise beats the white-box attacks (gradient masking)"),
    ):
        if probe is None or survivors is None:
            checks.append(Check(name, None, "needs white-box results with per-example data"))
            continue
        checks.append(compare(name, survivors.worst_with(probe), survivors, label, "the white-box attacks", what))

    transfers = []
    for cell in (c for c in cells if c.transfer and c.examples is not None):
        white = _worst_case([c for c in cells if c.white_box and c.eps == cell.eps])
        if white is not None:
            transfers.append(compare("transfer", cell.examples, white, cell.label, "the white-box attacks",
                                     "a transfer attack beats the white-box attacks (gradient masking)"))
    checks.append(worst_of(transfers, "transfer", "no transfer attack in the sweep"))

    adaptive = []
    for cell in (c for c in cells if c.white_box and c.variant != DEFAULT and c.examples is not None):
        default = _worst_case([c for c in cells if c.variant == DEFAULT and c.eps == cell.eps])
        if default is not None:
            adaptive.append(compare("adaptive", cell.examples, default, cell.label, "the default attacks",
                                    "the default attacks are masked; report the adaptive attack"))
    checks.append(worst_of(adaptive, "adaptive", "no adaptive variant in the sweep"))

    flags = {message: count for c in cells for message, count in c.warnings.items()}
    if any(c.attack.startswith("autoattack") for c in cells):
        reason = "AutoAttack's checks: " + " | ".join(flags) if flags else "AutoAttack's checks raised nothing"
        checks.append(Check("autoattack-flags", not flags, reason, float(len(flags)), detail={"warnings": flags}))
    else:
        checks.append(Check("autoattack-flags", None, "no AutoAttack in the sweep"))
    return checks


def _worst_case_summaries(norm: str, cells: list[StoredAttack], extra: dict[float, list[tuple[str, ExampleSet]]]
                          ) -> list[Summary]:
    out = []
    for eps in sorted({c.eps for c in cells}):
        at = [c for c in cells if c.eps == eps and c.examples is not None]
        parts = [(c.label, c.examples) for c in at] + extra.get(eps, [])
        if not parts:
            continue
        worst = parts[0][1]
        for _, examples in parts[1:]:
            worst = worst.worst_with(examples)
        if worst.n == 0:
            continue
        row_low, row_high = binomial_ci(worst.n_correct, worst.n)
        detail = {"attacks": [label for label, _ in parts], "examples": worst.to_detail(),
                  "note": "per-example worst case on the examples every listed attack evaluated"}
        key = {"threat": norm, "attack": "worst-case", "protocol": "honest", "variant": DEFAULT, "norm": norm,
               "eps": eps, "eps_str": at[0].eps_str if at else f"{eps:g}"}
        out.append(Summary(key, [MetricRow("top1", worst.n_correct / worst.n, row_low, row_high, worst.n,
                                           detail=detail)]))
    return out


@register_summary("attack", SUMMARY_VERSION)
def summarise_attacks(ctx: SummaryContext) -> list[Summary]:
    """Per norm of the honest sweep: worst-case cells per eps and one verdict cell."""
    cells = [c for c in read_attacks(ctx.frame) if c.protocol == "honest"]
    if not cells:
        return []
    run_checks, square_queries = _settings(ctx.tables)
    model = ctx.model.module
    torch.manual_seed(PROBE_SEED)
    facts = model_facts(model, ctx) if run_checks else None
    out: list[Summary] = []
    for norm in sorted({c.norm for c in cells}):
        mine = [c for c in cells if c.norm == norm]
        if facts is None:
            out += _worst_case_summaries(norm, mine, {})
            continue
        ref_eps, survivors = _reference_eps(mine)
        base = _base_pgd(mine, ref_eps)
        probes = run_probes(model, ctx, norm, ref_eps, survivors, base, square_queries)
        extra: dict[float, list[tuple[str, ExampleSet]]] = {}
        if ref_eps is not None:
            extra[ref_eps] = [(label, probe) for label, probe in (
                ("square probe", probes.square), ("noise probe", probes.noise), ("stronger PGD probe", probes.stronger),
            ) if probe is not None]
        out += _worst_case_summaries(norm, mine, extra)
        checks = _verdict_checks(mine, facts, probes, ref_eps, survivors, base, ctx.data.num_classes)
        reasons = [c.reason for c in checks if c.passed is False]
        verdict = MetricRow("unreliable", float(bool(reasons)), n=facts.n, detail={
            "verdict": "unreliable" if reasons else "reliable",
            "reasons": reasons,
            "reference_eps": ref_eps,
            "clean_top1": facts.clean.n_correct / max(facts.n, 1),
            "margin": f"fail when the lower end of the 95% Wilson interval of the share exceeds {TOLERANCE}",
            "checks": {c.name: c.passed for c in checks},
        })
        key = {"threat": norm, "attack": "verdict", "protocol": "honest", "variant": DEFAULT, "norm": norm}
        out.append(Summary(key, [verdict] + [c.row() for c in checks]))
    return out
