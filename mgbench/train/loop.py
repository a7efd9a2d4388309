"""The training loop: SGD + OneCycle (per iteration), seeded, a checkpoint every epoch.

Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank reads its share of
every epoch (DistributedSampler), ``batch_size`` is the total over ranks, and rank 0 alone writes
checkpoints and logs (``OUT`` must be on a shared file system for resuming on several nodes).

A run writes ``OUT/last.pt`` after every epoch (model, optimiser, schedule, RNG states) and
resumes from it when started again with the same ``OUT``; at the end it writes the weights
alone to ``OUT/model.pt`` and the per-epoch log to ``OUT/log.json``. A model may define
``training_loss(x, y) -> (loss, logits)`` (MGNet does: per-step and auxiliary losses);
otherwise the loss is cross-entropy on ``model(x)``. A *method* is how one iteration uses the
batch: ``standard`` is one optimiser step; other methods (group-wise inhibition) register
themselves with :func:`register_method`.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from mgbench import distributed
from mgbench.data import DataSpec, make_loader, open_dataset
from mgbench.device import to_unit
from mgbench.errors import InputError
from mgbench.models import load_model, zoo_dir
from mgbench.progress import task as progress_task
from mgbench.provenance import device_name, git_sha, library_versions, now_iso, sha256_file
from mgbench.registry import Registry
from mgbench.train.recipes import Recipe, get_recipe, train_transform


class LossModule(nn.Module):
    """``forward(x, y) -> (loss, logits)``; one module so DDP sees every parameter's use."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        custom = getattr(self.model, "training_loss", None)
        if custom is not None:
            return custom(x, y)
        logits = self.model(x)
        return F.cross_entropy(logits, y), logits


@dataclass
class StepContext:
    """What a training method gets for one iteration."""

    net: LossModule
    x: torch.Tensor
    y: torch.Tensor
    optimizer: torch.optim.Optimizer
    iteration: int
    autocast: Callable[[], ContextManager[Any]]
    iterations_per_epoch: int  # lets a method express its schedule in epochs of any recipe


TrainMethod = Callable[[StepContext], tuple[float, torch.Tensor]]
_METHODS: Registry[TrainMethod] = Registry("training method")


def register_method(name: str) -> Callable[[TrainMethod], TrainMethod]:
    return _METHODS.register(name)


def get_method(name: str) -> TrainMethod:
    return _METHODS.get(name)


@register_method("standard")
def standard_step(ctx: StepContext) -> tuple[float, torch.Tensor]:
    ctx.optimizer.zero_grad(set_to_none=True)
    with ctx.autocast():
        loss, logits = ctx.net(ctx.x, ctx.y)
    loss.backward()
    ctx.optimizer.step()
    return float(loss.detach()), logits.detach()


@dataclass
class TrainResult:
    out: Path
    weights: Path
    log: list[dict[str, Any]] = field(default_factory=list)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def _test_accuracy(model: nn.Module, data: DataSpec, device: torch.device, batch_size: int) -> float:
    opened = open_dataset(data)
    loader = make_loader(opened.dataset, batch_size, device=device, workers=0 if data.name == "digits" else None)
    correct = total = 0
    model.eval()
    for images, labels, _, _ in loader:
        if images is None:
            continue
        logits = model(to_unit(images, device))
        correct += int(logits.argmax(1).cpu().eq(labels).sum())
        total += labels.numel()
    return correct / max(total, 1)


def train(
    arch: str,
    data: DataSpec,
    out: str | Path,
    *,
    recipe: str | Recipe = "tiny",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str = "auto",
    method: str = "standard",
    workers: int | None = None,
    amp: bool = True,
    model_args: dict[str, Any] | None = None,
    test_limit: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train ``arch`` on the train split of ``data`` (a fixed seeded subset with ``data.limit``),
    reporting test accuracy after every epoch (on ``test_limit`` images); resumes from
    ``out/last.pt``."""
    base = get_recipe(recipe) if isinstance(recipe, str) else recipe
    rec = base.with_overrides(epochs=epochs, batch_size=batch_size, lr=lr)
    if rec.epochs < 1 or rec.batch_size < 1 or rec.lr <= 0:
        raise InputError("--epochs, --batch-size and --lr must be positive")
    step_fn = get_method(method)
    dev = distributed.init(device)
    world = distributed.world_size()
    if rec.batch_size % world:
        raise InputError(f"--batch-size {rec.batch_size} (the total over all ranks) is not divisible by {world} ranks")
    out = Path(out)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"--out {out} is {'a file' if folder == out else f'under {folder}, a file'}: "
                                 "pass a run folder (new, or a previous run to resume)")
            break
    # The code that trains is the checkout at the start: edits made while a long run goes on
    # must not be recorded as its provenance.
    code_sha = git_sha()
    _seed_everything(seed)
    model = load_model(arch, init_seed=None, num_classes=data.num_classes, **(model_args or {})).module.to(dev)
    net: nn.Module = LossModule(model)
    if distributed.active():
        # BatchNorm statistics stay per rank, as in the official MGNet training (no SyncBN).
        net = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    train_data = open_dataset(data.with_split("train"), train_transform=train_transform(rec.augmentation))
    generator = torch.Generator().manual_seed(seed)
    sampler = (DistributedSampler(train_data.dataset, shuffle=True, seed=seed, drop_last=True)
               if distributed.active() else None)
    loader = make_loader(
        train_data.dataset, rec.batch_size // world, device=dev, shuffle=sampler is None, generator=generator,
        drop_last=True, workers=0 if data.name == "digits" and workers is None else workers, sampler=sampler,
    )
    if len(loader) == 0:
        raise InputError(f"the train split has {train_data.n} images, fewer than one batch of {rec.batch_size}")
    optimizer = torch.optim.SGD(model.parameters(), lr=rec.lr, momentum=rec.momentum, weight_decay=rec.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=rec.lr, total_steps=rec.epochs * len(loader), pct_start=rec.pct_start,
        div_factor=rec.div_factor, final_div_factor=rec.final_div_factor, cycle_momentum=True,
        base_momentum=0.85, max_momentum=0.95,
    )
    use_amp = amp and rec.amp and dev.type == "cuda"

    def autocast() -> ContextManager[Any]:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    log: list[dict[str, Any]] = []
    start_epoch = 0
    last = out / "last.pt"
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"])
        log = json.loads(state["log"])
    out.mkdir(parents=True, exist_ok=True)

    iteration = start_epoch * len(loader)
    for epoch in range(start_epoch, rec.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        started = time.perf_counter()
        total_loss = total_correct = seen = 0.0
        with progress_task(f"train epoch {epoch + 1}/{rec.epochs}: batch", total=len(loader)) as bar:
            for batch_index, (images, labels, _, _) in enumerate(loader):
                if images is None:
                    continue
                x, y = to_unit(images, dev), labels.to(dev, non_blocking=True)
                loss, logits = step_fn(StepContext(net, x, y, optimizer, iteration, autocast, len(loader)))
                scheduler.step()
                iteration += 1
                total_loss += loss * y.numel()
                total_correct += float(logits.argmax(1).eq(y).sum())
                seen += y.numel()
                bar.update(completed=batch_index + 1, status=f"loss {total_loss / seen:.3f}")
                if progress is not None:
                    progress(epoch + 1, batch_index + 1, loss)
        total_loss, total_correct, seen = distributed.all_sum([total_loss, total_correct, seen])
        test_data = DataSpec(name=data.name, root=data.root, class_list=data.class_list, limit=test_limit)
        entry = {
            "epoch": epoch + 1,
            "train_loss": total_loss / max(seen, 1),
            "train_acc": total_correct / max(seen, 1),
            "test_acc": _test_accuracy(model, test_data, dev, rec.batch_size) if distributed.is_main() else None,
            "lr_end": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
        }
        log.append(entry)
        if not distributed.is_main():
            continue
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch + 1,
            "log": json.dumps(log),
        }
        tmp = last.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(last)

    weights = out / "model.pt"
    if not distributed.is_main():
        distributed.barrier()
        return TrainResult(out, weights, log)
    torch.save(model.state_dict(), weights)
    summary = {
        "arch": arch,
        "dataset": data.label,
        "recipe": rec.as_dict(),
        "method": method,
        "seed": seed,
        "device": device_name(dev),
        "ranks": world,
        "precision": "bf16 autocast" if use_amp else "fp32",
        "model_args": model_args or {},
        "git_sha": code_sha,
        "versions": library_versions(),
        "finished_at": now_iso(),
        "epochs": log,
    }
    (out / "log.json").write_text(json.dumps(summary, indent=2))
    distributed.barrier()
    return TrainResult(out, weights, log)


def write_card(
    result: TrainResult, name: str, command: str, *, zoo: Path | None = None, description: str = ""
) -> Path:
    """Copy the trained weights into the zoo (``$MGBENCH_ZOO`` or ``models/``) and write their card
    (with sha256, command, seed and the device it was trained on)."""
    zoo = zoo or zoo_dir()
    summary = json.loads((result.out / "log.json").read_text())
    zoo.mkdir(parents=True, exist_ok=True)
    target = zoo / f"{name}.pt"
    shutil.copyfile(result.weights, target)
    final = summary["epochs"][-1]
    device = summary.get("device", "unknown")
    if not description:
        description = (f"{summary['arch']} trained on {summary['dataset']} with the {summary['recipe']['name']} recipe "
                       f"({summary['method']} method), seed {summary['seed']}, on {device}")
    args = "".join(f"{k} = {json.dumps(v)}\n" for k, v in summary["model_args"].items())
    recipe = summary["recipe"]
    text = (
        f'name = "{name}"\n'
        f'architecture = "{summary["arch"]}"\n'
        f'dataset = "{summary["dataset"]}"\n'
        f"description = {json.dumps(description)}\n\n"
        f"[arguments]\nnum_classes = {10 if summary['dataset'] == 'digits' else 100}\n{args}\n"
        f"[checkpoint]\npath = \"{target.name}\"\nsha256 = \"{sha256_file(target)}\"\nformat = \"mgbench\"\n\n"
        f"[training]\ncommand = {json.dumps(command)}\nmethod = \"{summary['method']}\"\n"
        f"recipe = \"{recipe['name']}\"\nepochs = {recipe['epochs']}\nbatch_size = {recipe['batch_size']}\n"
        f"lr = {recipe['lr']}\nseed = {summary['seed']}\ndevice = {json.dumps(device)}\n"
        f"ranks = {summary.get('ranks', 1)}\nprecision = {json.dumps(summary.get('precision', 'fp32'))}\n"
        f"git_sha = \"{summary['git_sha']}\"\n"
        f"torch = \"{summary['versions']['torch']}\"\n"
        f"final_train_loss = {final['train_loss']:.4f}\nfinal_test_acc = {final['test_acc']:.4f}\n"
    )
    card = zoo / f"{name}.toml"
    card.write_text(text)
    return card
