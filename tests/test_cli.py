"""The CLI end to end: run, resume, results show/export, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from support import write_card

from mgbench.data import DataSpec, class_list, make_loader, open_dataset
from mgbench.models import load_model
from mgbench.store import Store


def _independent_top1(model_name: str, limit: int) -> float:
    """Top-1 by a plain loop over the same fixed subset, without the runner."""
    model = load_model(model_name).module.eval()
    opened = open_dataset(DataSpec(limit=limit))
    correct = 0
    with torch.no_grad():
        for images, labels, _, _ in make_loader(opened.dataset, 50, device=torch.device("cpu"), workers=0):
            correct += int(model(images.float() / 255).argmax(1).eq(labels).sum())
    return correct / opened.n


def test_run_resume_force_show_export(run_cli, store_path: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("run", "--suite", "clean", "--model", "resnet-tiny", "--limit", "120",
                             "--store", str(store_path))
    assert code == 0, err
    assert "resnet-tiny" in out and "2 cell(s) computed, 0 already" in out
    with Store(store_path) as store:
        frame = store.frame()
    top1 = frame[(frame.threat == "clean") & (frame.metric == "top1")]
    assert len(top1) == 1 and int(top1.n.iloc[0]) == 120
    # Another batch size can change a logit's last bit (another kernel blocking) and so flip a
    # near-tied prediction: agree within one example.
    assert top1.value.iloc[0] == pytest.approx(_independent_top1("resnet-tiny", 120), abs=1 / 120 + 1e-12)
    assert top1.ci_low.iloc[0] < top1.value.iloc[0] < top1.ci_high.iloc[0]
    assert set(frame.metric) >= {"top1", "top5", "images_per_s", "params", "gmacs"}
    assert (frame.git_sha.str.len() > 0).all() and frame.device.str.startswith("cpu").all()

    code, out, _ = run_cli("run", "--suite", "clean", "--model", "resnet-tiny", "--limit", "120",
                           "--store", str(store_path))
    assert code == 0 and "0 cell(s) computed, 2 already" in out
    code, out, _ = run_cli("run", "--suite", "clean", "--model", "resnet-tiny", "--limit", "120",
                           "--store", str(store_path), "--force")
    assert code == 0 and "2 cell(s) computed" in out
    with Store(store_path) as store:
        assert store.counts()[0] == 2  # --force replaced, did not duplicate

    code, out, _ = run_cli("results", "show", "--store", str(store_path))
    assert code == 0 and "resnet-tiny" in out and "2 cells" in out
    for fmt in ("csv", "parquet"):
        target = tmp_path / f"export.{fmt}"
        code, out, _ = run_cli("results", "export", "--store", str(store_path), "--format", fmt, "--out", str(target))
        assert code == 0
        frame = pd.read_csv(target) if fmt == "csv" else pd.read_parquet(target)
        assert {"model", "threat", "metric", "value", "ci_low", "config", "git_sha", "torch_version"} <= set(frame)


def _fake_imagenet(root: Path, broken: bool) -> None:
    for label, wnid in enumerate(class_list("mgnet")):
        (root / "val" / wnid).mkdir(parents=True)
        Image.new("RGB", (64, 64), (label, 0, 0)).save(root / "val" / wnid / "a.png")
    if broken:
        (root / "val" / class_list("mgnet")[3] / "b.JPEG").write_bytes(b"garbage")


@pytest.mark.parametrize("args,message", [
    (["run", "--suite", "nope"], "unknown suite 'nope'"),
    (["run", "--suite", "clean", "--model", "resnet-huge"], "unknown model 'resnet-huge'"),
    (["run", "--suite", "clean", "--limit", "0"], "--limit must be a positive whole number"),
    (["run", "--suite", "clean", "--batch-size", "0"], "--batch-size must be a positive whole number"),
    (["run", "--suite", "clean", "--data", "imagenet100"], "imagenet100 needs --data-root"),
    (["run", "--suite", "clean", "--data-root", "/nonexistent/imagenet"], "does not exist"),
    (["run", "--suite", "clean", "--device", "cuda:7"], "no CUDA GPU is visible"),
    (["run", "--suite", "clean", "--class-list", "mine", "--data-root", "/x"], "unknown class list 'mine'"),
    (["run", "--suite", "clean", "--bogus"], "No such option"),
    (["results", "show"], "no results store"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run_cli, store_path: Path, args, message) -> None:
    if args[0] == "run":
        args = [*args, "--store", str(store_path)]
    else:
        args = [*args, "--store", str(store_path)]
    code, out, err = run_cli(*args)
    assert code == 2
    assert message in err and err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    assert not store_path.exists()


def test_unreadable_image_fail_and_skip(run_cli, store_path: Path, tmp_path: Path) -> None:
    _fake_imagenet(tmp_path, broken=True)
    factory = tmp_path / "cheap.py"  # a cheap user model: this test is about the data, not the network
    factory.write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 100))\n"
    )
    base = ["run", "--suite", "clean", "--model", f"{factory}:build", "--data-root", str(tmp_path),
            "--store", str(store_path), "--batch-size", "64", "--workers", "0"]
    code, _, err = run_cli(*base)
    assert code == 2 and "unreadable image" in err and "b.JPEG" in err and len(err.strip().splitlines()) == 1
    if store_path.exists():  # only finished cells (compute) may be there, never the failed one
        with Store(store_path) as store:
            assert set(store.frame().threat) <= {"compute"}
    code, out, err = run_cli(*base, "--on-bad-image", "skip")
    assert code == 0, err
    assert "note: 1 unreadable image(s) skipped (--on-bad-image skip) in each of 1 cell(s)" in out
    with Store(store_path) as store:
        frame = store.frame(threat="clean")
    skipped = frame[frame.metric == "skipped_images"]
    assert skipped.value.tolist() == [1.0] and json.loads(skipped.detail.iloc[0])["images_read"] == 100
    assert frame.loc[frame.metric == "top1", "n"].tolist() == [100]
    assert frame.dataset.iloc[0] == "imagenet100-mgnet"


def test_a_limit_above_the_data_size_is_reported(run_cli, store_path: Path, tmp_path: Path) -> None:
    _fake_imagenet(tmp_path, broken=False)  # 100 images
    factory = tmp_path / "cheap.py"
    factory.write_text("import torch.nn as nn\ndef build():\n"
                       "    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 100))\n")
    code, out, err = run_cli("run", "--suite", "clean", "--model", f"{factory}:build", "--data-root", str(tmp_path),
                             "--limit", "500", "--store", str(store_path), "--workers", "0")
    assert code == 0, err
    assert "note: --limit 500 is more than the 100 images of imagenet100-mgnet val: 1 cell(s) ran on all 100" in out
    with Store(store_path) as store:
        top1 = store.frame(threat="clean", metric="top1")
    assert top1.n.tolist() == [100]
    assert json.loads(top1.detail.iloc[0]) == {"limit_requested": 500, "images_available": 100}


def test_bad_card_is_one_line(run_cli, store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGBENCH_ZOO", str(tmp_path))
    write_card(tmp_path, "broken.digits", '[checkpoint]\npath = "broken.pt"\nsha256 = "' + "1" * 64 + '"\n')
    (tmp_path / "broken.pt").write_bytes(b"123")
    code, _, err = run_cli("run", "--suite", "clean", "--model", "broken.digits", "--store", str(store_path))
    assert code == 2 and "broken.digits" in err and "sha256" in err and not store_path.exists()


def test_listing_commands_and_help(run_cli) -> None:
    code, out, _ = run_cli("models")
    assert code == 0 and "resnet-tiny" in out and "resnet50" in out
    code, out, _ = run_cli("suites")
    assert code == 0 and "clean" in out
    for command in (["--help"], ["run", "--help"], ["train", "--help"], ["results", "show", "--help"]):
        code, out, _ = run_cli(*command)
        assert code == 0 and "Usage:" in out


def test_a_run_stopped_part_way_keeps_the_summaries_of_the_models_it_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU reference runs across sessions and is stopped mid-suite: a model whose cells are all
    stored must have its worst case then, not only when the whole run ends. The second model's
    attack fails here; the first model's worst-case summary is in the store, the second's is not."""
    from mgbench import runner
    from mgbench.suites import load_suite

    suite_file = tmp_path / "stop.toml"
    suite_file.write_text('name = "stop"\ndataset = "digits"\nlimit = 4\n[[conditions]]\ntype = "clean"\n'
                          '[[conditions]]\ntype = "attack"\nattack = "fgsm"\nnorm = "linf"\neps = "4/255"\n'
                          'checks = false\n')
    evaluate = runner.evaluate_condition

    def stopped(modules, opened, condition, *args, names=None, **kwargs):  # type: ignore[no-untyped-def]
        if names == ["mgnet-tiny"] and condition.condition_type == "attack":
            raise KeyboardInterrupt
        return evaluate(modules, opened, condition, *args, names=names, **kwargs)

    monkeypatch.setattr(runner, "evaluate_condition", stopped)
    store = tmp_path / "s.sqlite"
    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(load_suite(str(suite_file)), models=["resnet-tiny", "mgnet-tiny"], store=store)
    with Store(store) as results:
        frame = results.frame()
    conditions = frame["condition_json"].map(json.loads)
    worst = frame[conditions.map(lambda c: c["type"] == "summary" and c.get("attack") == "worst-case")]
    assert set(worst["model"]) == {"resnet-tiny"}
    assert set(frame.loc[conditions.map(lambda c: c["type"] == "attack"), "model"]) == {"resnet-tiny"}
