"""The leaderboard is derived from the store: tables, json, csv, plots, and the page in a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import SYNTHETIC_MODELS, sql_rows, synthetic_cell, synthetic_store

from mgbench.report.build import build
from mgbench.report.leaderboard import collect, latest_cells
from mgbench.rows import MetricRow
from mgbench.store import Store


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
                 "plots/corruptions_digits.png", "glimpses/mgnet-demo.png"):
        assert (board / name).is_file(), name
    md = (board / "index.md").read_text()
    # headline: clean, corruptions, mCE, robust 4/255 (the worst case), attack, n, verdict, GMACs, params (M);
    # one card per model here, so the model rows show the card's numbers without a spread, best robust first
    assert "| alpha.digits | 95.0 | 70.0 | 30.0 | 15.0 | AutoAttack +1 | 1000 | reliable | 0.0640 | 1.00 |" in md
    assert "| beta.digits | 80.0 | 60.0 | 40.0 | 35.0 | AutoAttack +1 | 1000 | unreliable |" in md
    headline = md.split("### digits: headline")[1].split("###")[0]
    assert [line.split(" | ")[0] for line in headline.splitlines() if line.startswith("| ") and "." in line] == \
        ["| beta.digits", "| alpha.digits", "| gamma.digits"]
    assert "| pgd | 4/255 | 1000 | 20.0 | 40.0 | 5.0 |" in md  # attack x eps rows, a column per model
    assert "accuracy after each glimpse" in md and "| beta.digits | unreliable | square beat white-box |" in md
    assert "mCE normalised by alpha.digits on the same data" in md
    record = json.loads((board / "json" / "digits" / "gamma.digits.json").read_text())
    assert record["clean_acc"] == "90.00" and record["corruptions_acc"] == "50.00"
    assert record["autoattack_acc"] == "1.00" and record["eps"] == "4/255" and record["unreliable"] is False
    assert record["mgbench"]["verdict"] == "reliable"
    assert {"name", "architecture", "dataset", "eps", "clean_acc", "autoattack_acc", "corruptions_acc",
            "corruptions_mce", "unreliable", "footnote"} <= set(record)
    csv = pd.read_csv(board / "leaderboard.csv")
    assert csv.set_index("model").loc["beta.digits", "clean_top1"] == 0.80
    assert csv.set_index("model")["verdict"].to_dict() == {"alpha.digits": "reliable", "beta.digits": "unreliable",
                                                          "gamma.digits": "reliable"}
    html = (board / "index.html").read_text()
    assert "<svg" in html and 'src="glimpses/mgnet-demo.png"' in html and "http" not in html.split("<svg")[0]
    assert "<figcaption>digits: how fast robust accuracy falls" in html and ">ok<" not in html


# A real store, built once for the module: two seed cards each of a plain and an anytime model, clean,
# two corruptions (mCE against resnet-tiny.digits.s0) and an FGSM + PGD sweep (5 steps, without the
# verdict's probes) whose summary stores the per-example worst case per eps. About 30 s on one core.
REAL_CARDS = ["resnet-tiny.digits.s0", "resnet-tiny.digits.s1", "mgnet-tiny.digits.s0", "mgnet-tiny.digits.s1"]
REAL_SUITE = f"""name = "small"
dataset = "digits"
models = {json.dumps(REAL_CARDS)}
limit = 32

[[conditions]]
type = "clean"

[[conditions]]
type = "corruption"
corruptions = ["fog", "contrast"]
severities = [2]
backend = "torch"
mce_baseline = "resnet-tiny.digits.s0"

[[conditions]]
type = "attack"
attack = ["fgsm", "pgd"]
loss = "ce"
steps = 5
restarts = 1
norm = "linf"
eps = ["2/255", "4/255", "8/255"]
checks = false

[[conditions]]
type = "attack"
attack = "pgd"
loss = "ce"
steps = 5
restarts = 1
norm = "linf"
eps = "4/255"
per_step = true
checks = false
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the store, the leaderboard built from it)."""
    from mgbench.runner import run_suite
    from mgbench.suites import load_suite

    root = tmp_path_factory.mktemp("real")
    (root / "small.toml").write_text(REAL_SUITE)
    store = root / "r.sqlite"
    run_suite(load_suite(str(root / "small.toml")), store=store)
    with Store(store) as db:
        build(db.frame(), root / "board", None, source="r.sqlite")
    return store, root / "board"


def _read(store: Path, where: str, *args: object) -> dict[str, list[float]]:
    """Per card, the final values of the rows matching ``where`` (read with sqlite3, not mgbench)."""
    found: dict[str, list[float]] = {}
    for model, value in sql_rows(store, f"SELECT model, value FROM results WHERE step IS NULL AND {where} "
                                 "ORDER BY model", *args):
        found.setdefault(model, []).append(value)
    return found


def _per_model(per_card: dict[str, list[float]]) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = {}
    for card, values in sorted(per_card.items()):
        assert len(values) == 1, card
        grouped.setdefault(card.rsplit(".s", 1)[0], []).append(values[0])
    return grouped


def _mean_sd(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}"


WORST_4 = "attack = 'worst-case' AND eps_str = '4/255' AND metric = 'top1'"


def test_headline_one_row_per_model_from_a_real_store(real: tuple[Path, Path]) -> None:
    """Per model: mean ± sd (numpy, ddof=1) over its seed cards of the values sqlite3 reads from the
    store; best robust first; the per-card table follows the per-model one in the markdown."""
    store, board = real
    clean = _per_model(_read(store, "threat = 'clean' AND metric = 'top1'"))
    corrupted = _per_model(_read(store, "corruption = 'mean' AND severity IS NULL AND metric = 'mean_top1'"))
    mce = _per_model(_read(store, "metric = 'mce'"))
    robust = _per_model(_read(store, WORST_4))
    gmacs = _per_model(_read(store, "threat = 'compute' AND metric = 'gmacs'"))
    params = _per_model(_read(store, "threat = 'compute' AND metric = 'params'"))
    assert sorted(clean) == sorted(robust) == ["mgnet-tiny.digits", "resnet-tiny.digits"]
    md = (board / "index.md").read_text()
    headline = md.split("### digits: headline")[1].split("### digits: every card")[0]
    for model in clean:
        row = (f"| {model} | {_mean_sd(clean[model])} | {_mean_sd(corrupted[model])} | {_mean_sd(mce[model])} | "
               f"{_mean_sd(robust[model])} | PGD +1 | 32 | not checked | {gmacs[model][0]:.4f} | "
               f"{params[model][0] / 1e6:.2f} |")
        assert row in headline, row
    order = sorted(robust, key=lambda m: -np.mean(robust[m]))
    assert [line.split(" | ")[0][2:] for line in headline.splitlines() if line.startswith("| ") and ".digits" in line] \
        == order
    cards = md.split("### digits: every card")[1].split("![")[0]  # the per-card table, before the plots
    for card in REAL_CARDS:
        value = _read(store, WORST_4)[card][0]
        assert f"| {card} | " in cards and f"| {100 * value:.1f} | PGD +1 | 32 |" in cards.split(f"| {card} | ")[1]
    # The summariser's own records (mCE normaliser, per-glimpse means) go through to the files.
    assert "mCE normalised by resnet-tiny.digits.s0 on the same data" in md
    record = json.loads((board / "json" / "digits" / "mgnet-tiny.digits.s0.json").read_text())
    assert record["corruptions_mce"] is not None and "resnet-tiny.digits.s0" in record["footnote"]
    with Store(store) as db:
        entries = {e.model: e for e in collect(db.frame())}
    assert entries["resnet-tiny.digits.s0"].mce == pytest.approx(1.0)
    assert len(entries["mgnet-tiny.digits.s0"].corruption_steps) == 4  # mean accuracy after each glimpse
    html = (board / "index.html").read_text()
    assert "<pre" not in html and "|---" not in html
    assert html.count('<tr class="seed">') == 4 and html.count("<details><summary>") == 2


def test_plots_draw_models_from_a_real_store(real: tuple[Path, Path]) -> None:
    """Robust vs eps: one line per model through the numpy mean of its seeds' worst cases; the
    compute plot's robust panel: MGNet's curve through the per-glimpse worst case; one colour per
    model, never shared."""
    from mgbench.report import plots
    from mgbench.report.leaderboard import model_groups

    store, board = real
    with Store(store) as db:
        entries = collect(db.frame())
    palette = plots.colours(model_groups(entries))
    assert len(set(palette.values())) == len(palette) == 2
    figure, note = plots.robust_vs_eps(entries, "digits")
    lines = [line for line in figure.axes[0].lines if len(line.get_xdata()) > 1]
    drawn = {line.get_color(): list(line.get_ydata()) for line in lines}
    for model in ("mgnet-tiny.digits", "resnet-tiny.digits"):
        worst = [_per_model(_read(store, f"attack = 'worst-case' AND eps_str = '{eps}' AND metric = 'top1'"))[model]
                 for eps in ("2/255", "4/255", "8/255")]
        expected = [100 * np.mean(values) for values in worst]
        assert drawn[palette[model.split(".")[0]]] == pytest.approx(expected)
    assert note == ""
    figure, note = plots.accuracy_vs_compute(entries, "digits")
    steps = np.array([[v for (v,) in sql_rows(
        store, "SELECT value FROM results WHERE model = ? AND attack = 'worst-case' AND eps_str = '4/255' AND "
        "metric = 'top1' AND step IS NOT NULL ORDER BY step", card)] for card in REAL_CARDS[2:]])
    curve = [line for line in figure.axes[2].lines if line.get_linestyle() == "-"]  # seeds of points: dashes
    assert len(curve) == 1 and curve[0].get_color() == palette["mgnet-tiny"]
    assert list(curve[0].get_ydata()) == pytest.approx(list(100 * steps.mean(axis=0)))
    for name in ("accuracy_vs_gmacs_digits.png", "robust_vs_eps_digits.png", "corruptions_digits.png"):
        assert (board / "plots" / name).is_file()


def test_no_robust_numbers_give_a_plot_with_a_note(real: tuple[Path, Path], tmp_path: Path) -> None:
    store, _ = real
    with Store(store) as db:
        frame = db.frame()
    result = build(frame[~frame["threat"].isin(["linf", "l2"])], tmp_path / "board")
    md = (result.out / "index.md").read_text()
    assert (result.out / "plots" / "robust_vs_eps_digits.png").is_file() and "No robust results stored yet." in md
    assert "robust at 4/255 (worst case): no robust results stored yet." in md


def test_more_models_than_colours_is_an_error() -> None:
    from mgbench.report import plots
    from mgbench.report.leaderboard import Entry, model_groups

    groups = model_groups([Entry(f"m{i}.digits", "digits", "a", "w") for i in range(len(plots.PALETTE) + 1)])
    with pytest.raises(ValueError, match="distinct colours"):
        plots.colours(groups)


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


# Elements that stick out of the viewport (left of 0 or right of its width), leaving out those inside a
# box that scrolls on its own (wide tables; at phone width, plots).
_OVERFLOW = """
var boxes = arguments[0], width = document.documentElement.clientWidth, bad = [];
document.querySelectorAll('body *').forEach(function (el) {
  if (el.parentElement && el.parentElement.closest(boxes)) { return; }
  var r = el.getBoundingClientRect();
  if (r.width > 0 && (r.left < -0.5 || r.right > width + 0.5)) { bad.push(el.tagName + ' ' + el.className); }
});
return bad;
"""


def _driver(tmp_path: Path, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / f'profile{width}'}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _what_a_reader_sees(driver, scrolling_boxes: str) -> None:
    """No markdown table source in the visible text, nothing wider than the viewport outside its
    own scrolling box, every plot and picture loaded."""
    import re

    text = driver.execute_script("return document.body.innerText")
    assert not re.search(r"^\s*\|.*\|\s*$", text, re.M) and "|---" not in text and "---|" not in text
    width = driver.execute_script("return document.documentElement.clientWidth")
    assert driver.execute_script("return document.documentElement.scrollWidth") <= width
    assert driver.execute_script(_OVERFLOW, scrolling_boxes) == []
    svgs = driver.execute_script("return Array.from(document.querySelectorAll('figure svg')).map("
                                 "function (s) { var r = s.getBoundingClientRect(); return [r.width, r.height]; })")
    assert len(svgs) >= 3 and all(w > 100 and h > 50 for w, h in svgs)
    import time

    loaded = "return Array.from(document.images).every(function (i) { return i.complete && i.naturalWidth > 0; })"
    for image in driver.find_elements("tag name", "img"):  # lazy pictures load once scrolled to
        driver.execute_script("arguments[0].scrollIntoView()", image)
    deadline = time.monotonic() + 10
    while not driver.execute_script(loaded) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert driver.execute_script(loaded)
    driver.execute_script("window.scrollTo(0, 0)")


@pytest.mark.slow
def test_page_reads_in_a_headless_browser(board: Path, real: tuple[Path, Path], tmp_path: Path) -> None:
    """The synthetic page (a glimpse picture) and the real store's page (seed cards) in Chromium at
    1280 and 390 px: what a reader sees, the folded seeds, sorting that keeps them with their model."""
    from selenium.webdriver.common.by import By

    _, real_board = real
    for page in (board, real_board):
        for width, boxes in ((1280, "div.wide"), (390, "div.wide, figure")):
            driver = _driver(tmp_path, width, 900)
            try:
                driver.get((page / "index.html").resolve().as_uri())
                _what_a_reader_sees(driver, boxes)
            finally:
                driver.quit()

    driver = _driver(tmp_path, 1280, 900)
    try:
        driver.get((board / "index.html").resolve().as_uri())
        table = driver.find_element(By.ID, "table0")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [row.find_elements(By.TAG_NAME, "td")[0].text for row in rows] == \
            ["beta.digits", "alpha.digits", "gamma.digits"]  # best first: robust accuracy at 4/255

        def clean_column() -> list[float]:
            return [float(row.find_elements(By.TAG_NAME, "td")[1].text.split()[0])
                    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

        # At 1280 px the headline table shows whole: nothing scrolls or is cut off horizontally.
        width = driver.execute_script("return document.documentElement.clientWidth")
        assert table.rect["x"] >= 0 and table.rect["x"] + table.rect["width"] <= width
        wrapper = table.find_element(By.XPATH, "..")
        assert driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", wrapper)
        for cell in table.find_elements(By.TAG_NAME, "td"):
            assert driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", cell)
        header = table.find_element(By.XPATH, ".//th[text()='clean']")
        header.click()
        assert clean_column() == [80.0, 90.0, 95.0]
        header.click()
        assert clean_column() == [95.0, 90.0, 80.0]

        # The real page: each model's seed cards are folded beneath it and open with its name.
        driver.get((real_board / "index.html").resolve().as_uri())
        table = driver.find_element(By.ID, "table0")
        seeds = table.find_elements(By.CSS_SELECTOR, "tr.seed")
        assert len(seeds) == 4 and not any(row.is_displayed() for row in seeds)
        table.find_element(By.XPATH, ".//summary[text()='resnet-tiny.digits']").click()
        shown = [row.find_elements(By.TAG_NAME, "td")[0].text for row in seeds if row.is_displayed()]
        assert shown == ["resnet-tiny.digits.s0", "resnet-tiny.digits.s1"]
        for _ in range(2):  # both directions: every model keeps its seeds in its own tbody
            table.find_element(By.XPATH, ".//th[text()='robust 4/255']").click()
            for group in table.find_elements(By.TAG_NAME, "tbody"):
                names = [row.find_elements(By.TAG_NAME, "td")[0].text for row in group.find_elements(By.TAG_NAME, "tr")]
                assert all(name.startswith(names[0].split(" ")[0]) for name in names[1:] if name), names
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width
    finally:
        driver.quit()


@pytest.mark.slow
def test_screenshots_at_laptop_and_phone_width(real: tuple[Path, Path], tmp_path: Path) -> None:
    import struct

    _chromium()
    store, _ = real
    with Store(store) as db:
        result = build(db.frame(), tmp_path / "board", screenshots=True)
    for name, width in (("screenshot-1280.png", 1280), ("screenshot-390.png", 390)):
        header = (result.out / name).read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", header[16:20])[0] == width
        assert (result.out / name) in result.files


def test_same_store_gives_byte_identical_files(tmp_path: Path) -> None:
    """Two builds of one store in two processes (different string-hash seeds, so set order differs)
    write the same bytes: no dates, no random SVG ids, columns in a fixed order."""
    import sys

    store = synthetic_store(tmp_path / "s.sqlite")
    with Store(store) as db:  # variants of one attack: their column order once hung on set iteration
        for variant in ("eot", "bpda", "no-rescaler"):
            synthetic_cell(db, "attack", "alpha.digits",
                  {"threat": "linf", "attack": "pgd", "protocol": "honest", "variant": variant, "norm": "linf",
                   "eps": 4 / 255, "eps_str": "4/255"}, [MetricRow("top1", 0.1, 0.05, 0.15, 1000)])
    script = ("import sys; from pathlib import Path; from mgbench.store import Store; "
              "from mgbench.report.build import build; db = Store(Path(sys.argv[1])); "
              "build(db.frame(), Path(sys.argv[2]), None, source='s.sqlite')")
    boards = []
    for seed in ("1", "2"):
        out = tmp_path / f"board{seed}"
        subprocess.run([sys.executable, "-c", script, str(store), str(out)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, cwd=Path(__file__).resolve().parents[1])
        boards.append(out)
    files = [sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) for b in boards]
    assert files[0] == files[1] and len(files[0]) > 10
    changed = [str(f) for f in files[0] if (boards[0] / f).read_bytes() != (boards[1] / f).read_bytes()]
    assert changed == []
    svg = (boards[0] / "plots" / "accuracy_vs_gmacs_digits.svg").read_text()
    assert "<dc:date>" not in svg


def test_random_init_models_are_left_out_unless_asked(tmp_path: Path, run_cli) -> None:
    """Untrained weights are no result: the leaderboard lists them only with --include-random-init,
    and says whom it left out."""
    trained = synthetic_store(tmp_path / "s.sqlite")
    untrained = tmp_path / "untrained.sqlite"
    code, out, err = run_cli("run", "--suite", "clean", "--model", "resnet-tiny", "--limit", "16", "--store",
                             str(untrained), "--device", "cpu", "--workers", "0")
    assert code == 0, err
    assert "resnet-tiny (random-init)" in out  # the run's own table says so too
    glimpses = tmp_path / "no-glimpses"
    glimpses.mkdir()
    stores = ["--store", str(trained), "--store", str(untrained), "--glimpses", str(glimpses)]
    code, out, err = run_cli("leaderboard", *stores, "--out", str(tmp_path / "board"))
    assert code == 0, err
    assert "3 model x dataset entries" in out and "left out (random-init weights" in out and "resnet-tiny" in out
    csv = pd.read_csv(tmp_path / "board" / "leaderboard.csv")
    assert sorted(csv["model"]) == ["alpha.digits", "beta.digits", "gamma.digits"]
    assert not (tmp_path / "board" / "json" / "digits" / "resnet-tiny.json").exists()
    code, out, err = run_cli("leaderboard", *stores, "--out", str(tmp_path / "all"), "--include-random-init")
    assert code == 0, err
    assert "4 model x dataset entries" in out and "left out" not in out
    csv = pd.read_csv(tmp_path / "all" / "leaderboard.csv").set_index("model")
    assert csv.loc["resnet-tiny", "weights"] == "random-init" and csv.loc["resnet-tiny", "clean_n"] == 16
    record = json.loads((tmp_path / "all" / "json" / "digits" / "resnet-tiny.json").read_text())
    assert record["mgbench"]["weights"] == "random-init"


def test_seed_cards_are_summarised_and_gaps_judged_against_noise(tmp_path: Path) -> None:
    """Hand-made seeds: a: 90/92/94 (mean 92, sd 2, range 4); b: 80/81/82 (mean 81, range 2);
    c: 89/95/91 (mean 91.67, range 6). Every clean interval is +-1.5 points."""
    from mgbench.report.leaderboard import seed_differences, seed_groups

    clean = {"a.digits": (0.90, 0.92, 0.94), "b.digits": (0.80, 0.81, 0.82), "c.digits": (0.89, 0.95, 0.91)}
    path = synthetic_store(tmp_path / "r.sqlite")
    with Store(path) as store:
        for base, values in clean.items():
            for seed, value in enumerate(values):
                model = f"{base}.s{seed}"
                synthetic_cell(store, "clean", model, {"threat": "clean"},
                      [MetricRow("top1", value, value - 0.015, value + 0.015, 1000)])
        frame = store.frame()
    entries = collect(frame)
    groups = seed_groups(entries)
    assert [(g.base, g.seeds) for g in groups] == [(b, [0, 1, 2]) for b in sorted(clean)]
    a = groups[0].metrics["clean"]
    assert a.mean == pytest.approx(0.92) and a.spread == pytest.approx(0.02) and a.range == pytest.approx(0.04)
    assert a.sampling == pytest.approx(0.015)
    assert set(groups[0].metrics) == {"clean"}  # no seed has corruption or attack cells
    gaps = {(row.first, row.second): (row.gap, row.beyond_noise) for row in seed_differences(groups).itertuples()}
    assert gaps[("a.digits", "b.digits")] == (pytest.approx(0.11), True)  # 11 points > ranges 4, 2 and 1.5
    assert gaps[("a.digits", "c.digits")] == (pytest.approx(0.92 - 0.9167, abs=1e-4), False)
    assert gaps[("b.digits", "c.digits")][1] is True  # 10.7 points > range 6
    md = (build(frame, tmp_path / "board").out / "index.md").read_text()
    assert "### digits: across seeds" in md and "| a.digits | 0, 1, 2 | clean | 92.0 | 2.0 | 4.0 | 1.5 |" in md
    assert "| a.digits - b.digits | clean | +11.0 | yes |" in md
    assert "| a.digits - c.digits | clean | +0.3 | no |" in md
    assert "| a.digits | 92.0 ± 2.0 | - |" in md  # the headline's model row: mean ± sd over the three seeds


def test_tracked_page_is_built_from_the_reference_alone(tmp_path: Path, run_cli, monkeypatch) -> None:
    """results/leaderboard (the committed page) takes the reference store only; --local builds the
    reference and the local store into the ignored results/local-leaderboard."""
    import mgbench.cli.report as report
    import mgbench.store as store_module

    reference, local = synthetic_store(tmp_path / "reference.sqlite"), tmp_path / "local.sqlite"
    with Store(local) as db:
        synthetic_cell(db, "clean", "delta.digits", {"threat": "clean"}, [MetricRow("top1", 0.5, 0.4, 0.6, 100)])
    tracked, local_board = tmp_path / "results" / "leaderboard", tmp_path / "results" / "local-leaderboard"
    monkeypatch.setattr(report, "TRACKED_BOARD", tracked)
    monkeypatch.setattr(report, "LOCAL_BOARD", local_board)
    monkeypatch.setattr(store_module, "REFERENCE_STORE", reference)
    monkeypatch.setattr(store_module, "DEFAULT_STORE", local)
    glimpses = ["--glimpses", str(tmp_path / "none")]
    for args in (["--store", str(local)], ["--store", str(reference), "--store", str(local)], ["--local", "--out",
                                                                                                 str(tracked)]):
        code, out, err = run_cli("leaderboard", *args, *glimpses)
        assert code == 2 and "committed leaderboard" in err and "--local" in err and not tracked.exists(), args
    code, out, err = run_cli("leaderboard", *glimpses)
    assert code == 0, err
    assert sorted(pd.read_csv(tracked / "leaderboard.csv")["model"]) == sorted(SYNTHETIC_MODELS)
    code, out, err = run_cli("leaderboard", "--local", *glimpses)
    assert code == 0, err
    assert sorted(pd.read_csv(local_board / "leaderboard.csv")["model"]) == sorted([*SYNTHETIC_MODELS, "delta.digits"])
    assert sorted(pd.read_csv(tracked / "leaderboard.csv")["model"]) == sorted(SYNTHETIC_MODELS)  # untouched
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/local-leaderboard/index.html"],
                             cwd=Path(__file__).resolve().parents[1])
    assert ignored.returncode == 0  # git-ignored in the repository


def test_the_glimpse_table_shows_robust_accuracy_after_each_glimpse(real: tuple[Path, Path]) -> None:
    """MGNet's per-glimpse worst case at 4/255 (step rows, read with sqlite3) sits in the
    glimpse table beside each glimpse's cumulative GMACs."""
    store, board = real
    steps = sql_rows(store, "SELECT step, value FROM results WHERE model = 'mgnet-tiny.digits.s0' "
                            f"AND step IS NOT NULL AND {WORST_4} ORDER BY step")
    gmacs = sql_rows(store, "SELECT step, value FROM results WHERE model = 'mgnet-tiny.digits.s0' "
                            "AND metric = 'gmacs' AND step IS NOT NULL ORDER BY step")
    assert [s for s, _ in steps] == [1, 2, 3, 4] and [s for s, _ in gmacs] == [1, 2, 3, 4]
    table = (board / "index.md").read_text().split("accuracy after each glimpse")[1].split("###")[0]
    assert "robust top-1 (4/255)" in table
    for (step, robust), (_, cumulative) in zip(steps, gmacs):
        row = next(line for line in table.splitlines() if line.startswith(f"| mgnet-tiny.digits.s0 | {step} | "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == f"{cumulative:.4f}" and cells[-1] == f"{100 * robust:.1f}"  # PGD aimed at every glimpse


APGD = "autoattack-custom:apgd-ce+apgd-t 4/255"


@pytest.mark.parametrize("attacks, marked", [
    ([APGD, f"{APGD} [rescaler-off]"], ["1", "2", "3"]),  # only the final prediction attacked
    ([APGD, f"{APGD} [rescaler-off+glimpse=2]"], ["1", "3"]),
    ([APGD, *(f"{APGD} [glimpse={t}]" for t in (1, 2, 3))], []),
])
def test_a_glimpse_no_attack_aimed_at_is_marked_an_upper_bound(
        tmp_path: Path, attacks: list[str], marked: list[str]) -> None:
    """A glimpse's robust number read off an attack on the final logits only bounds the robust
    accuracy of that glimpse's prediction: the table marks it until an attack aimed there is stored."""
    with Store(tmp_path / "s.sqlite") as store:
        _worst(store, "mgnet-tiny.digits.s0", "worst-case", 0.5, attacks, (0.7, 0.6, 0.55, 0.5))
        _anytime_compute(store, "mgnet-tiny.digits.s0")
        build(store.frame(), tmp_path / "board", None, source="s.sqlite")
    table = (tmp_path / "board" / "index.md").read_text().split("accuracy after each glimpse")[1].split("###")[0]
    rows_by_step = {line.split("|")[2].strip(): line.split("|")[-2].strip()
                    for line in table.splitlines() if line.startswith("| mgnet-tiny.digits.s0 |")}
    assert sorted(rows_by_step) == ["1", "2", "3", "4"], table
    assert sorted(step for step, text in rows_by_step.items() if text.endswith("†")) == marked, rows_by_step


def _worst(store: Store, model: str, name: str, value: float, attacks: list[str],
           steps: tuple[float, ...] = ()) -> None:
    """A worst-case summary at 4/255 (``steps``: its rows after each glimpse, the last = value)."""
    rows = [MetricRow("top1", v, v - 0.02, v + 0.02, 500, step=t + 1, detail={"attacks": attacks})
            for t, v in enumerate(steps)]
    synthetic_cell(store, "summary", model, {"threat": "linf", "attack": name, "protocol": "honest",
                                             "variant": "default", "norm": "linf", "eps": 4 / 255, "eps_str": "4/255"},
                   [MetricRow("top1", value, value - 0.02, value + 0.02, 500, detail={"attacks": attacks}), *rows])


def _anytime_compute(store: Store, model: str, gmacs: tuple[float, ...] = (0.01, 0.02, 0.03, 0.04)) -> None:
    synthetic_cell(store, "compute", model, {"threat": "compute"},
                   [MetricRow("gmacs", g, step=t + 1) for t, g in enumerate(gmacs)] + [MetricRow("gmacs", gmacs[-1])])


@pytest.mark.parametrize("seed1_attacks, expected_mean, expected_attack", [
    # seed 1 ran APGD only, seed 0 also AutoAttack: the mean takes APGD-CE+T's worst case on both
    ([APGD], (0.40 + 0.44) / 2, "APGD-CE+T (all seeds)"),
    # both seeds ran the same attacks: the mean takes every attack's worst case
    ([APGD, "autoattack-standard 4/255"], (0.30 + 0.36) / 2, "AutoAttack +1"),
])
def test_a_models_robust_mean_compares_its_seeds_like_with_like(
        tmp_path: Path, seed1_attacks: list[str], expected_mean: float, expected_attack: str) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        _worst(store, "delta.digits.s0", "worst-case", 0.30, [APGD, "autoattack-standard 4/255"])
        _worst(store, "delta.digits.s0", "worst-case:apgd", 0.40, [APGD])
        _worst(store, "delta.digits.s1", "worst-case", 0.44 if len(seed1_attacks) == 1 else 0.36, seed1_attacks)
        _worst(store, "delta.digits.s1", "worst-case:apgd", 0.44, [APGD])
        synthetic_cell(store, "clean", "delta.digits.s2", {"threat": "clean"},  # a seed with no attack yet
                       [MetricRow("top1", 0.97, 0.96, 0.98, 2000)])
        frame = store.frame()
    build(frame, tmp_path / "board", None, source="s.sqlite")
    md = (tmp_path / "board" / "index.md").read_text()
    headline = md.split("### digits: headline")[1].split("### digits: every card")[0]
    row = next(line for line in headline.splitlines() if line.startswith("| delta.digits |"))
    values = (0.40, 0.44) if len(seed1_attacks) == 1 else (0.30, 0.36)
    assert f"| {100 * expected_mean:.1f} ± {100 * np.std(values, ddof=1):.1f}* | {expected_attack} | 500 |" in row
    cards = md.split("### digits: every card")[1]
    card = next(line for line in cards.splitlines() if line.startswith("| delta.digits.s0 |"))
    assert "| 30.0 | AutoAttack +1 | 500 |" in card  # each card keeps its own worst case
    from mgbench.report import plots  # the robust-vs-eps plot's mean is the same like-with-like mean
    figure, _ = plots.robust_vs_eps(collect(frame), "digits")
    drawn = {round(float(y), 6) for line in figure.axes[0].lines for y in line.get_ydata()}
    assert round(100 * expected_mean, 6) in drawn


def test_the_compute_plots_robust_curve_compares_seeds_like_with_like_and_opens_bounded_glimpses(
        tmp_path: Path) -> None:
    """Seed 0 ran more attacks than seed 1: the robust curve through the glimpses averages the
    worst case both ran (APGD-CE+T's) step by step, as the final number does, and its glimpses
    1-3 (no attack aimed at them in that worst case) get open markers and a note."""
    from mgbench.report import plots

    with Store(tmp_path / "s.sqlite") as store:
        for card in ("mgnet-tiny.digits.s0", "mgnet-tiny.digits.s1"):
            _anytime_compute(store, card)
        _worst(store, "mgnet-tiny.digits.s0", "worst-case", 0.30,
               [APGD, "autoattack-standard 4/255", f"{APGD} [glimpse=2]"], (0.6, 0.4, 0.35, 0.30))
        _worst(store, "mgnet-tiny.digits.s0", "worst-case:apgd", 0.40, [APGD], (0.7, 0.5, 0.45, 0.40))
        _worst(store, "mgnet-tiny.digits.s1", "worst-case", 0.44, [APGD], (0.8, 0.6, 0.5, 0.44))
        _worst(store, "mgnet-tiny.digits.s1", "worst-case:apgd", 0.44, [APGD], (0.8, 0.6, 0.5, 0.44))
        frame = store.frame()
    figure, note = plots.accuracy_vs_compute(collect(frame), "digits")
    robust = figure.axes[2].lines
    curve = [line for line in robust if line.get_linestyle() == "-"]
    assert len(curve) == 1 and list(curve[0].get_ydata()) == pytest.approx([75.0, 55.0, 47.5, 42.0])
    hollow = [line for line in robust if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == pytest.approx([0.01, 0.02, 0.03])
    assert "Open markers" in note


def test_a_legend_wider_than_its_figure_widens_the_figure_instead_of_being_cut() -> None:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from mgbench.report import plots

    fig = Figure(figsize=(3.0, 2.0), layout="constrained")
    fig.add_subplot().plot([0, 1], [0, 1])
    long = [(Line2D([], [], marker="o"), f"gwi-resnet-tiny.digits (3 seeds) (unreliable) {i}") for i in range(5)]
    plots._legend(fig, [], {}, long)
    fig.draw_without_rendering()
    box = fig.legends[0].get_window_extent()
    assert fig.get_size_inches()[0] > 3.0
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width
