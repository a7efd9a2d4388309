"""The gradient-masking checks: pure functions of the stored attack cells (per-example results)
and a few cheap model facts. The ``attack`` summary (:mod:`mgbench.attacks.verdict`) feeds them.

Margins. Comparisons are per example. For "attack A must not beat attack B" we count the
examples A breaks and B leaves correct, ``u`` of ``n`` (the examples both evaluated), and fail
when the lower end of the 95% Wilson interval of ``u / n`` exceeds ``TOLERANCE`` (1 percentage
point): a failure is statistically significant evidence that B misses at least 1% of the data
that A finds, while a handful of examples (attack randomness) passes: u >= 3 at n = 100, 10 at
500, 17 at 1,000, 64 at 5,000. The same rule applies to the zero-gradient share; chance-level
fails when the lower end of the interval of the large-eps accuracy exceeds 1/K.

Every probe a check needs (noise, Square, the chance-level PGD, a second seed) is an ordinary
stored attack cell (see :mod:`mgbench.attacks.spec`); a check whose cells are missing is
recorded as not run and never fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mgbench.attacks.attack import describe
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.variants import ADAPTIVE, DEFAULT, TRANSFER_PREFIX, without_seed
from mgbench.metrics import binomial_ci
from mgbench.rows import MetricRow

TOLERANCE = 0.01
CHANCE_EPS_LINF = 0.5  # the chance-level probe's budget (spec.CHANCE_EPS)
LONGER = 5  # a PGD with this many times the steps x restarts probes convergence


@dataclass
class StoredAttack:
    """One stored attack cell, as the checks need it."""

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
    step_examples: list[ExampleSet] = field(default_factory=list)  # anytime models: correct after each step

    @property
    def label(self) -> str:
        text = f"{self.attack} {self.eps_str}"
        if self.pgd:
            text += f" ({self.steps} steps, {self.restarts} restart{'s' if self.restarts != 1 else ''})"
        return text + ("" if self.variant == DEFAULT else f" [{self.variant}]")

    @property
    def tokens(self) -> set[str]:
        return set() if self.variant == DEFAULT else set(self.variant.split("+"))

    @property
    def transfer(self) -> bool:
        return self.variant.startswith(TRANSFER_PREFIX)

    @property
    def kind(self) -> str | None:
        """The registered attack that stored the cell (:func:`mgbench.attacks.attack.describe`)."""
        return describe(self.attack).kind

    @property
    def pgd(self) -> bool:
        return self.kind == "pgd"

    @property
    def square(self) -> bool:
        return self.kind == "square"

    @property
    def noise(self) -> bool:
        return self.kind == "noise"

    @property
    def official_autoattack(self) -> bool:
        """A cell of the official AutoAttack code (AutoAttack, APGD, Square)."""
        found = describe(self.attack).attack
        return found is not None and found.autoattack_code

    @property
    def autoattack(self) -> bool:
        """AutoAttack or APGD (a gradient attack of the official code), not the Square probe."""
        return self.official_autoattack and not self.square

    @property
    def white_box(self) -> bool:
        """A gradient attack on this model (not transfer, not noise or Square)."""
        return not self.transfer and not self.square and not self.noise

    @property
    def chance(self) -> bool:
        """The chance-level probe: PGD without random start at L-inf >= 0.5."""
        return self.pgd and self.norm == "linf" and self.eps >= CHANCE_EPS_LINF and self.random_start is False

    @property
    def reseeded(self) -> bool:
        return any(t.startswith("seed=") for t in self.tokens)

    @property
    def series(self) -> tuple[Any, ...]:
        """Cells of one series differ only in eps (and the eps-dependent default step size)."""
        return (self.attack, self.variant, self.steps, self.restarts, self.random_start)


@dataclass
class ModelFacts:
    """Norm-independent facts from one pass over the data (the summary's only computation)."""

    probabilities: bool
    randomised: bool
    clean: ExampleSet
    zero_grad: int
    n: int
    num_classes: int

    def to_detail(self) -> dict[str, Any]:
        """Stored in the verdict, so that a merge can recompute the verdict without the model."""
        return {"probabilities": self.probabilities, "randomised": self.randomised, "clean": self.clean.to_detail(),
                "zero_grad": self.zero_grad, "n": self.n, "num_classes": self.num_classes}

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> "ModelFacts":
        return cls(bool(detail["probabilities"]), bool(detail["randomised"]), ExampleSet.from_detail(detail["clean"]),
                   int(detail["zero_grad"]), int(detail["n"]), int(detail["num_classes"]))


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
    """Several comparisons of one kind (all named ``name``) -> the failing one with the largest
    statistic, else the passing one with the largest statistic (all comparisons listed in the
    detail); ``name`` and ``none_reason`` when none ran."""
    ran = [c for c in checks if c.passed is not None]
    if not ran:
        return Check(name, None, none_reason)
    failed = [c for c in ran if not c.passed]
    pick = max(failed or ran, key=lambda c: c.value or 0.0)
    return Check(pick.name, pick.passed, pick.reason, pick.value, pick.n, pick.interval,
                 {**pick.detail, "comparisons": [c.reason for c in ran]})


def worst_case(sets: list[ExampleSet]) -> ExampleSet | None:
    """Per-example worst case (correct only if every set has it correct), on the examples all evaluated."""
    if not sets:
        return None
    out = sets[0]
    for other in sets[1:]:
        out = out.worst_with(other)
    return out


def _with_examples(cells: list[StoredAttack]) -> list[StoredAttack]:
    return [c for c in cells if c.examples is not None]


# ----------------------------------------------------------------------------- the checks

def model_checks(facts: ModelFacts, cells: list[StoredAttack]) -> list[Check]:
    """logits, randomised, zero-gradients."""
    eot = any(c.attack == "autoattack-rand" for c in cells)
    randomised = ("the model is randomised (two forward passes of one batch differ)"
                  + (": evaluated with AutoAttack rand (EOT)" if eot else ": single-sample gradients and accuracies "
                     "vary; evaluate with AutoAttack version rand (EOT)"))
    failed, interval = beats(facts.zero_grad, facts.n)
    return [
        Check("logits", not facts.probabilities,
              "the model outputs probabilities, not logits: cross-entropy on them saturates and masks gradients"
              if facts.probabilities else "the outputs are not probabilities"),
        Check("randomised", not facts.randomised or eot,
              randomised if facts.randomised else "the model is deterministic"),
        Check("zero-gradients", not failed,
              f"{facts.zero_grad}/{facts.n} examples have an exactly zero input gradient"
              + (": gradient attacks cannot move them" if failed else ""),
              facts.zero_grad / max(facts.n, 1), facts.n, interval, {"tolerance": TOLERANCE}),
    ]


def monotone_check(cells: list[StoredAttack]) -> Check:
    out = []
    mine = _with_examples([c for c in cells if c.white_box and not c.chance])
    for series in {c.series for c in mine}:
        members = sorted((c for c in mine if c.series == series), key=lambda c: c.eps)
        for small, large in zip(members, members[1:]):
            out.append(compare("monotone-eps", small.examples, large.examples, small.label, large.label,
                               "accuracy does not fall monotonically with eps"))
    return worst_of(out, "monotone-eps", "needs one attack at two or more eps")


def chance_check(cells: list[StoredAttack], num_classes: int) -> Check:
    probes = _with_examples([c for c in cells if c.chance])
    if not probes:
        return Check("chance-level", None, "needs the chance-level PGD probe (checks = true)")
    probe = min(probes, key=lambda c: c.examples.n_correct / max(c.examples.n, 1))
    large = probe.examples
    low, high = binomial_ci(large.n_correct, large.n)
    chance = 1 / num_classes
    accuracy = large.n_correct / max(large.n, 1)
    failed = low > chance
    return Check("chance-level", not failed,
                 f"PGD at L-inf eps {probe.eps_str} ({probe.steps} steps, no random start) leaves "
                 f"{100 * accuracy:.1f}% correct, chance is {100 * chance:.0f}%"
                 + (": the gradients do not lead across the decision boundary" if failed else ""),
                 accuracy, large.n, (low, high), {"eps": probe.eps, "chance": chance})


def _same_place(a: StoredAttack, b: StoredAttack) -> bool:
    """Same norm, eps and (seed aside) variant."""
    return a.norm == b.norm and a.eps == b.eps and without_seed(a.variant) == without_seed(b.variant)


def fgsm_check(cells: list[StoredAttack]) -> Check:
    mine = _with_examples(cells)
    pairs = [compare("pgd-vs-fgsm", f.examples, p.examples, f.label, p.label,
                     "multi-step PGD does worse than single-step FGSM")
             for p in mine if p.pgd and not p.chance and not p.reseeded
             for f in mine if f.kind == "fgsm" and f.variant == p.variant and f.eps == p.eps and f.norm == p.norm]
    return worst_of(pairs, "pgd-vs-fgsm", "needs FGSM and PGD at the same eps")


def converged_check(cells: list[StoredAttack]) -> Check:
    """A stronger optimiser must not break more than the margin of what PGD left correct:
    AutoAttack / APGD (another optimiser with its step-size schedule and targeted loss), and PGD
    with at least 5x the steps x restarts of the same loss."""
    mine = _with_examples([c for c in cells if not c.chance])
    out = []
    for weak in (c for c in mine if c.pgd and not c.reseeded):
        budget = (weak.steps or 1) * (weak.restarts or 1)
        for strong in mine:
            longer = (strong.attack == weak.attack and strong.variant == weak.variant and strong.eps == weak.eps
                      and (strong.steps or 1) * (strong.restarts or 1) >= LONGER * budget)
            if (strong.autoattack and _same_place(strong, weak)) or longer:
                out.append(compare("converged", strong.examples, weak.examples, strong.label, weak.label,
                                   "PGD has not converged (a stronger optimiser finds what it misses)"))
    return worst_of(out, "converged", "needs AutoAttack/APGD or a 5x longer PGD beside a PGD cell")


def seed_check(cells: list[StoredAttack]) -> Check:
    """A second independent seed of an attack must not break more than the margin of what the
    first left correct (and the other way round): the attack's randomness decides too much."""
    mine = _with_examples(cells)
    out = []
    for again in (c for c in mine if c.reseeded):
        for first in (c for c in mine if not c.reseeded and c.attack == again.attack and c.norm == again.norm
                      and c.eps == again.eps and c.variant == without_seed(again.variant)):
            out.append(compare("seed", again.examples, first.examples, again.label, first.label,
                               "another seed of the same attack breaks more: run more restarts"))
            out.append(compare("seed", first.examples, again.examples, first.label, again.label,
                               "another seed of the same attack breaks more: run more restarts"))
    return worst_of(out, "seed", "needs a second seed of an attack (checks = true)")


def _white_box_at(cells: list[StoredAttack], norm: str, eps: float) -> ExampleSet | None:
    return worst_case([c.examples for c in _with_examples(cells) if c.white_box and c.norm == norm and c.eps == eps])


def probe_check(name: str, cells: list[StoredAttack], label: str, what: str) -> Check:
    """Square or noise cells vs the white-box worst case at their eps."""
    out = []
    for probe in _with_examples([c for c in cells if (c.square if name == "square" else c.noise)]):
        white = _white_box_at(cells, probe.norm, probe.eps)
        if white is not None:
            out.append(compare(name, white.worst_with(probe.examples), white, f"{label} {probe.eps_str}",
                               "the white-box attacks", what))
    return worst_of(out, name, f"needs the {name} probe and white-box results (checks = true)")


def transfer_check(cells: list[StoredAttack]) -> Check:
    out = []
    for cell in _with_examples([c for c in cells if c.transfer]):
        white = _white_box_at(cells, cell.norm, cell.eps)
        if white is not None:
            out.append(compare("transfer", cell.examples, white, cell.label, "the white-box attacks",
                               "a transfer attack beats the white-box attacks (gradient masking)"))
    return worst_of(out, "transfer", "no transfer attack in the sweep")


def adaptive_check(cells: list[StoredAttack]) -> Check:
    """Adaptive variants (rescaler-off, all-glimpses) vs the default attacks at their eps: both
    run at the same (full) strength, so a gap is the default attack being masked."""
    mine = _with_examples(cells)
    out = []
    for cell in (c for c in mine if c.white_box and c.tokens and c.tokens <= set(ADAPTIVE)):
        default = worst_case([c.examples for c in mine if c.variant == DEFAULT and c.white_box
                              and c.norm == cell.norm and c.eps == cell.eps])
        if default is not None:
            out.append(compare("adaptive", cell.examples, default, cell.label, "the default attacks",
                               "the default attacks are masked; report the adaptive attack"))
    return worst_of(out, "adaptive", "no adaptive variant in the sweep")


def autoattack_flags(cells: list[StoredAttack]) -> Check:
    flags = {message: count for c in cells for message, count in c.warnings.items()}
    if not any(c.official_autoattack for c in cells):
        return Check("autoattack-flags", None, "no AutoAttack in the sweep")
    reason = "AutoAttack's checks: " + " | ".join(flags) if flags else "AutoAttack's checks raised nothing"
    return Check("autoattack-flags", not flags, reason, float(len(flags)), detail={"warnings": flags})


def verdict_checks(cells: list[StoredAttack], facts: ModelFacts) -> list[Check]:
    """Every check, in a fixed order, on one norm's honest cells."""
    return [
        *model_checks(facts, cells),
        monotone_check(cells),
        chance_check(cells, facts.num_classes),
        fgsm_check(cells),
        converged_check(cells),
        seed_check(cells),
        probe_check("square", cells, "Square (gradient-free)",
                    "a black-box attack beats the white-box attacks (gradient masking)"),
        probe_check("noise", cells, "random noise", "random noise beats the white-box attacks (gradient masking)"),
        transfer_check(cells),
        adaptive_check(cells),
        autoattack_flags(cells),
    ]
