"""The leaderboard is derived from the store: tables, json, csv, plots, and the page in a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from mgbench.report.build import build
from mgbench.report.leaderboard import collect, latest_cells
from mgbench.store import CellRecord, MetricRow, Store

PROVENANCE = {"config_hash": "h", "seed": 0, "versions": {"mgbench": "0", "torch": "t"}, "git_sha": "s",
              "device": "cpu", "started_at": "a", "finished_at": "2026-01-01", "runtime_s": 0.0}

# model -> (clean top-1, corruption mean, pgd 4/255, autoattack 4/255, unreliable, gmacs per step)
MODELS = {
    "alpha.digits": (0.95, 0.70, 0.20, 0.15, False, [0.064]),
    "beta.digits": (0.80, 0.60, 0.40, 0.35, True, [0.01, 0.02, 0.03]),
    "gamma.digits": (0.90, 0.50, 0.05, 0.01, False, [0.2]),
}


def _cell(store: Store, key: str, model: str, condition: dict, rows: list[MetricRow], n_finished: str = "1") -> None:
    store.write_cell(CellRecord(
        key, "synthetic", {"model": model, "arch": model.split(".")[0], "weights": "w", "params": 1_000_000},
        {"dataset": "digits", "split": "test", "preprocessing": "none", "subset": "s"}, condition, {},
        {**PROVENANCE, "finished_at": f"2026-01-0{n_finished}"}, rows,
    ))


def synthetic_store(path: Path) -> Path:
    with Store(path) as store:
        for model, (clean, corrupted, pgd, aa, unreliable, gmacs) in MODELS.items():
            steps = [MetricRow("gmacs", g, step=t + 1) for t, g in enumerate(gmacs)] if len(gmacs) > 1 else []
            _cell(store, f"{model}/compute", model, {"threat": "compute"},
                  [MetricRow("params", 1e6), MetricRow("gmacs", gmacs[-1]), *steps])
            clean_steps = ([MetricRow("top1", clean - 0.1 * (len(gmacs) - 1 - t), step=t + 1, n=1000)
                            for t in range(len(gmacs))] if len(gmacs) > 1 else [])
            _cell(store, f"{model}/clean", model, {"threat": "clean"},
                  [MetricRow("top1", clean, clean - 0.02, clean + 0.02, 1000), *clean_steps])
            for severity in (1, 2):
                _cell(store, f"{model}/fog{severity}", model,
                      {"threat": "corruption", "corruption": "fog", "severity": severity, "backend": "torch"},
                      [MetricRow("top1", corrupted + (0.05 if severity == 1 else -0.05), n=1000)])
            normaliser = {"kind": "model", "model": "alpha.digits", "same_data": {"name": "digits"}}
            _cell(store, f"{model}/cmean", model, {"threat": "corruption", "corruption": "mean", "backend": "torch"},
                  [MetricRow("mean_top1", corrupted, n=2000),
                   MetricRow("mce", 1 - corrupted, detail={"normaliser": normaliser})])
            for attack, value in (("pgd", pgd), ("autoattack-standard", aa)):
                _cell(store, f"{model}/{attack}", model,
                      {"threat": "linf", "attack": attack, "protocol": "honest", "variant": "default",
                       "norm": "linf", "eps": 4 / 255, "eps_str": "4/255"},
                      [MetricRow("top1", value, value - 0.01, value + 0.01, 1000)])
            _cell(store, f"{model}/verdict", model,
                  {"threat": "linf", "attack": "verdict", "protocol": "honest", "variant": "default", "norm": "linf"},
                  [MetricRow("unreliable", float(unreliable), detail={"reasons": ["square beat white-box"]
                                                                      if unreliable else []})])
        # A smaller, older run of one condition must lose against the full one.
        _cell(store, "alpha.digits/clean-limited", "alpha.digits", {"threat": "clean", "variant": None},
              [MetricRow("top1", 0.5, 0.4, 0.6, 100)], n_finished="2")
    return path


@pytest.fixture
def board(tmp_path: Path) -> Path:
    with Store(synthetic_store(tmp_path / "s.sqlite")) as store:
        frame = store.frame()
    glimpses = tmp_path / "glimpses"
    glimpses.mkdir()
    shutil.copyfile(Path(__file__).parent / "data" / "pixel.png", glimpses / "mgnet-demo.png")
    build(frame, tmp_path / "board", glimpses, source="synthetic")
    return tmp_path / "board"


def test_largest_n_wins_then_newest(tmp_path: Path) -> None:
    with Store(synthetic_store(tmp_path / "s.sqlite")) as store:
        frame = store.frame()
    chosen = latest_cells(frame)
    alpha = chosen[(chosen.model == "alpha.digits") & (chosen.threat == "clean") & (chosen.metric == "top1")]
    assert alpha["value"].tolist() == [0.95] and alpha["n"].tolist() == [1000]
    entries = {e.model: e for e in collect(frame)}
    assert entries["beta.digits"].anytime and entries["beta.digits"].gmacs_steps == [0.01, 0.02, 0.03]
    assert entries["beta.digits"].clean_steps == pytest.approx([0.6, 0.7, 0.8])
    assert entries["gamma.digits"].corruption_grid == {("fog", 1): 0.55, ("fog", 2): 0.45}
    assert entries["beta.digits"].unreliable is True and entries["alpha.digits"].unreliable is False


def test_files_tables_json_and_csv(board: Path) -> None:
    for name in ("index.md", "index.html", "leaderboard.csv", "plots/accuracy_vs_gmacs_digits.png",
                 "plots/accuracy_vs_gmacs_digits.svg", "plots/robust_vs_eps_digits.png",
                 "plots/corruptions_alpha.digits_digits.png", "glimpses/mgnet-demo.png"):
        assert (board / name).is_file(), name
    md = (board / "index.md").read_text()
    assert "| alpha.digits | alpha | 1.00 | 0.0640 | 95.0 [93.0, 97.0] | 1000 | 70.0 | 30.0 |" in md
    assert "| beta.digits |" in md and "unreliable" in md and "accuracy after each glimpse" in md
    assert "mCE normalised by alpha.digits on the same data" in md
    record = json.loads((board / "json" / "digits" / "gamma.digits.json").read_text())
    assert record["clean_acc"] == "90.00" and record["corruptions_acc"] == "50.00"
    assert record["autoattack_acc"] == "1.00" and record["eps"] == "4/255" and record["unreliable"] is False
    assert {"name", "architecture", "dataset", "eps", "clean_acc", "autoattack_acc", "corruptions_acc",
            "corruptions_mce", "unreliable", "footnote"} <= set(record)
    csv = pd.read_csv(board / "leaderboard.csv")
    assert csv.set_index("model").loc["beta.digits", "clean_top1"] == 0.80
    html = (board / "index.html").read_text()
    assert "<svg" in html and "data:image/png;base64," in html and "http" not in html.split("<svg")[0]


def test_built_from_a_real_corruption_run(tmp_path: Path) -> None:
    """The summariser's own records (mCE normaliser, per-glimpse means) go through to the files."""
    from mgbench.runner import evaluate
    from mgbench.suites import load_suite

    suite = tmp_path / "small.toml"
    suite.write_text('''name = "small"
dataset = "digits"
models = ["resnet-tiny.digits", "mgnet-tiny.digits"]
limit = 24

[[conditions]]
type = "clean"

[[conditions]]
type = "corruption"
corruptions = ["fog", "contrast"]
severities = [2]
backend = "torch"
mce_baseline = "resnet-tiny.digits"
''')
    store = tmp_path / "r.sqlite"
    evaluate(load_suite(str(suite)), store=store)
    with Store(store) as db:
        result = build(db.frame(), tmp_path / "board", None, source=str(store))
    entries = {e.model: e for e in result.entries}
    assert entries["mgnet-tiny.digits"].mce_normaliser == "resnet-tiny.digits"
    assert entries["resnet-tiny.digits"].mce == pytest.approx(1.0)
    assert len(entries["mgnet-tiny.digits"].corruption_steps) == 4  # mean accuracy after each glimpse
    md = (tmp_path / "board" / "index.md").read_text()
    assert "mCE normalised by resnet-tiny.digits on the same data" in md
    record = json.loads((tmp_path / "board" / "json" / "digits" / "mgnet-tiny.digits.json").read_text())
    assert record["corruptions_mce"] is not None and "resnet-tiny.digits" in record["footnote"]


def _chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver, installed here when missing (the test setup); the test
    is skipped, not failed, where they cannot be installed (no apt-get, no root, offline)."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

        def ok(*command: str) -> bool:
            try:
                return subprocess.run(command, env=env, capture_output=True, timeout=600).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                return False

        install = ("apt-get", "install", "-y", "-q", "chromium", "chromium-driver")
        if not ok(*install) and ok("apt-get", "update", "-q"):
            ok(*install)
        browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("chromium and chromium-driver are missing and could not be installed "
                    "(apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.mark.slow
def test_page_sorts_in_a_headless_browser(board: Path, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get((board / "index.html").resolve().as_uri())
        table = driver.find_element(By.ID, "table0")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [row.find_elements(By.TAG_NAME, "td")[0].text for row in rows] == sorted(MODELS)

        def clean_column() -> list[float]:
            return [float(row.find_elements(By.TAG_NAME, "td")[4].text.split()[0])
                    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

        header = table.find_element(By.XPATH, ".//th[text()='clean top-1']")
        header.click()
        assert clean_column() == [80.0, 90.0, 95.0]
        header.click()
        assert clean_column() == [95.0, 90.0, 80.0]
        assert len(driver.find_elements(By.TAG_NAME, "svg")) >= 2
        shot = tmp_path / "leaderboard.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
