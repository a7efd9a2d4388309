"""The ``attack`` summary: per-example worst cases and gradient-masking verdicts, a pure
function of the stored attack cells of a model (``SummaryContext.frame``) plus one cheap pass
over the data for model facts (clean accuracy, probability outputs, randomness, zero input
gradients), which the verdict stores so that a merge recomputes it from stored cells. The
probes the checks need (noise, Square, the chance-level PGD, a second seed) are ordinary attack
cells declared by the attack tables (``checks = true``), cached and resumed like any other; the
checks themselves live in :mod:`mgbench.attacks.checks`.

For every norm of the honest results the summary stores

- one ``worst-case`` cell per eps: ``top1`` = share of examples that *every* honest attack at
  that eps left correctly classified (white-box, adaptive variants, attacks aimed at single
  steps, transfer, AutoAttack, the probes), on the examples they all evaluated. Attacks run on
  fewer examples (a ``limit`` subset) are not mixed in: the worst case covers the attacks that
  evaluated the widest set, and lists the others as excluded, so it can never exceed an attack it
  covers (each covered attack evaluated every one of its examples);
- one ``verdict`` cell: ``unreliable`` (1 or 0) with the reasons, and one ``check:<name>`` row
  per check with its statistic, interval and explanation.

Results of the ``mgnet-paper`` protocol are not judged (a different threat model).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mgbench import progress
from mgbench.attacks.checks import TOLERANCE, ModelFacts, StoredAttack, verdict_checks
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.variants import DEFAULT
from mgbench.cellkey import canonical_json
from mgbench.conditions import LiveModel, Summary, SummaryContext, register_summary
from mgbench.data import make_loader
from mgbench.device import to_unit
from mgbench.metrics import binomial_ci
from mgbench.rows import MetricRow, optional

FACTS_SEED = 0
# Bump when a change moves the worst cases or the verdict (2: fed every stored attack cell of the
# model, data and run options, whichever suite wrote it; 3: the checks read only stored cells, probes
# included, and the worst case is per step for anytime models; 4: the verdict stores its model facts).
SUMMARY_VERSION = 4
WORST_CASE = "worst-case"  # the stored attack name of the per-example worst case
WORST_CASE_APGD = "worst-case:apgd"  # ... over APGD-CE+T alone (rescaler on and off): what every seed card runs


def read_attacks(frame: pd.DataFrame) -> list[StoredAttack]:
    """The attack cells among a summary context's rows."""
    out = []
    cells = frame[frame["threat"].isin(["linf", "l2"]) & frame["attack"].notna()]
    for _, cell in cells.groupby("cell_key", sort=False):
        final = {row.metric: row for row in cell[cell["step"].isna()].itertuples()}
        if "per_example" not in final:
            continue
        first = cell.iloc[0]
        examples, step_sets = None, []
        detail = final["per_example"].detail
        if isinstance(detail, str):
            try:
                parsed = json.loads(detail)
                examples = ExampleSet.from_detail(parsed)
                step_sets = [ExampleSet.from_detail(step) for step in parsed.get("steps", [])]
            except (KeyError, ValueError, TypeError):
                examples, step_sets = None, []
        warnings: dict[str, int] = {}
        checks = final.get("autoattack_checks")
        if checks is not None and isinstance(checks.detail, str):
            warnings = json.loads(checks.detail).get("warnings", {})
        steps, restarts, random_start = (optional(first[k]) for k in ("steps", "restarts", "random_start"))
        out.append(StoredAttack(
            attack=first["attack"], protocol=optional(first["protocol"]) or "honest",
            variant=optional(first["variant"]) or DEFAULT,
            norm=optional(first["norm"]) or first["threat"], eps=float(first["eps"]), eps_str=first["eps_str"],
            steps=None if steps is None else int(steps), step_size=optional(first["step_size"]),
            restarts=None if restarts is None else int(restarts),
            random_start=None if random_start is None else bool(random_start),
            examples=examples, warnings=warnings, step_examples=step_sets,
        ))
    return out


def _batches(live: LiveModel) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """The evaluation data as [0, 1] tensors on the device, with dataset indices."""
    loader = make_loader(live.opened.dataset, live.batch_size, device=live.device, workers=0)
    for images, labels, ids, _ in progress.track(loader, "verdict checks: batch"):
        if images is None:
            continue
        yield to_unit(images, live.device), labels.to(live.device), ids.numpy()


def model_facts(live: LiveModel) -> ModelFacts:
    model = live.loaded.module
    probabilities = randomised = False
    ids_all, clean_all = [], []
    zero = n = 0
    for index, (x, y, ids) in enumerate(_batches(live)):
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
    return ModelFacts(probabilities, randomised, clean, zero, n, live.spec.num_classes)


def covered(parts: list[tuple[str, ExampleSet]]) -> tuple[ExampleSet, list[str], list[str]]:
    """The per-example worst case over the attacks that evaluated the widest example set (every
    example any of them evaluated, else the largest single set): (worst case, labels covered,
    labels excluded because they evaluated fewer examples)."""
    size = max(e.members.size for _, e in parts)
    union = np.zeros(size, dtype=bool)
    for _, examples in parts:
        union |= examples.resized(size).members
    widest = union if any(_covers(e, union) for _, e in parts) else \
        max((e.resized(size).members for _, e in parts), key=lambda m: int(m.sum()))
    inside = [(label, e) for label, e in parts if _covers(e, widest)]
    worst = inside[0][1]
    for _, examples in inside[1:]:
        worst = worst.worst_with(examples)
    return worst, [label for label, _ in inside], [label for label, e in parts if not _covers(e, widest)]


def _covers(examples: ExampleSet, members: np.ndarray) -> bool:
    mine = examples.resized(members.size).members
    return bool((mine | ~members).all())


def shared_by_seeds(cell: StoredAttack) -> bool:
    """Whether a cell is of the attack every seed card of the CPU reference runs (attacks-seeds):
    APGD-CE+T on the model as it is or with its gradient rescaler off, not reseeded, aimed at no
    earlier glimpse, not transferred."""
    return cell.kind == "apgd" and cell.tokens <= {"rescaler-off"} and not cell.transfer


def _worst_case_summaries(norm: str, cells: list[StoredAttack]) -> list[Summary]:
    """Per eps: the per-example worst case over every attack (``worst-case``) and over APGD-CE+T
    alone (``worst-case:apgd``, when it ran), the number a model's seeds compare like with like."""
    out = []
    for eps in sorted({c.eps for c in cells if not c.chance}):
        at = [c for c in cells if c.eps == eps and c.examples is not None and not c.chance]
        for name, chosen in ((WORST_CASE, at), (WORST_CASE_APGD, [c for c in at if shared_by_seeds(c)])):
            if chosen:
                out += _worst_case(name, norm, eps, chosen)
    return out


def _worst_case(name: str, norm: str, eps: float, at: list[StoredAttack]) -> list[Summary]:
    worst, labels, excluded = covered([(c.label, c.examples) for c in at if c.examples is not None])
    if worst.n == 0:
        return []
    low, high = binomial_ci(worst.n_correct, worst.n)
    detail = {"attacks": labels, "excluded": excluded, "examples": worst.to_detail(),
              "note": "per-example worst case over the listed attacks, on the examples every one of them "
                      "evaluated; excluded attacks evaluated fewer examples"}
    key = {"threat": norm, "attack": name, "protocol": "honest", "variant": DEFAULT, "norm": norm,
           "eps": eps, "eps_str": at[0].eps_str}
    rows = [MetricRow("top1", worst.n_correct / worst.n, low, high, worst.n, detail=detail)]
    return [Summary(key, rows + _step_rows([c for c in at if c.label in labels], worst))]


def _step_rows(cells: list[StoredAttack], worst: ExampleSet) -> list[MetricRow]:
    """Anytime models: top-1 after each step t, the per-example worst case of every covered
    attack's step-t correctness (attacks aimed at step t, ``glimpse=t``, included) on the worst
    case's examples. Empty unless every covered attack stored the same number (> 1) of steps."""
    counts = {len(c.step_examples) for c in cells}
    if len(counts) != 1 or counts == {0} or counts == {1}:
        return []
    rows = []
    for t in range(counts.pop()):
        step = ExampleSet(worst.members, worst.members.copy())  # every example of the worst case, then cut
        for cell in cells:
            step = step.worst_with(cell.step_examples[t])
        low, high = binomial_ci(step.n_correct, step.n)
        rows.append(MetricRow("top1", step.n_correct / max(step.n, 1), low, high, step.n, step=t + 1))
    return rows


def _checks_enabled(tables: list[dict[str, Any]]) -> bool:
    return any(t.get("checks", True) for t in tables) if tables else True


def stored_facts(ctx: SummaryContext) -> ModelFacts | None:
    """The model facts a stored verdict (the only "unreliable" rows) of this model, data and run
    options carries (None when none does, e.g. a verdict written before the facts were stored)."""
    rows = ctx.store.frame(model_json=canonical_json(ctx.model), data_json=canonical_json(ctx.data),
                           options_json=canonical_json(ctx.options), metric="unreliable")
    for detail in rows["detail"].dropna():
        facts = json.loads(detail).get("facts")
        if facts is not None:
            return ModelFacts.from_detail(facts)
    return None


def tables_from_summaries(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The only table setting a summary depends on: whether the checks ran (a stored verdict)."""
    return [{"type": "attack", "checks": any(key.get("attack") == "verdict" for key in keys)}]


@register_summary("attack", SUMMARY_VERSION, tables_from_summaries)
def summarise_attacks(ctx: SummaryContext) -> list[Summary]:
    """Per norm of the honest results: worst-case cells per eps and one verdict cell (without the
    live model, the verdict needs the facts of a stored one; otherwise only worst cases)."""
    cells = [c for c in read_attacks(ctx.frame) if c.protocol == "honest"]
    if not cells:
        return []
    facts = None
    if _checks_enabled(ctx.tables):
        if ctx.live is not None:
            torch.manual_seed(FACTS_SEED)
            facts = model_facts(ctx.live)
        else:
            facts = stored_facts(ctx)
    out: list[Summary] = []
    chance = [c for c in cells if c.chance]  # L-inf, but it judges the gradients for every norm
    for norm in sorted({c.norm for c in cells if not c.chance}):
        mine = [c for c in cells if c.norm == norm]
        out += _worst_case_summaries(norm, mine)
        if facts is None:
            continue
        checks = verdict_checks(mine + [c for c in chance if c.norm != norm], facts)
        reasons = [c.reason for c in checks if c.passed is False]
        verdict = MetricRow("unreliable", float(bool(reasons)), n=facts.n, detail={
            "verdict": "unreliable" if reasons else "reliable",
            "reasons": reasons,
            "clean_top1": facts.clean.n_correct / max(facts.n, 1),
            "margin": f"fail when the lower end of the 95% Wilson interval of the share exceeds {TOLERANCE}",
            "checks": {c.name: c.passed for c in checks},
            "facts": facts.to_detail(),
        })
        key = {"threat": norm, "attack": "verdict", "protocol": "honest", "variant": DEFAULT, "norm": norm}
        out.append(Summary(key, [verdict] + [c.row() for c in checks]))
    return out
