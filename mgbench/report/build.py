"""``mgbench leaderboard``: every leaderboard file derived from the store, written atomically.

Outputs in the ``out`` folder: ``index.md`` (GitHub tables), ``index.html`` (one page: the
headline table, then details per threat, sortable; plots inlined as SVG, glimpse pictures linked
from ``glimpses/``; no network), ``leaderboard.csv``, ``json/<dataset>/<model>.json``
(RobustBench format), ``plots/*.png|svg``, the glimpse pictures found under
``results/glimpses``, when asked ``screenshot-1280.png`` / ``screenshot-390.png`` of the page,
and the marker ``.mgbench-leaderboard`` (the entries the build wrote). The folder is built beside
``out`` and swapped in at the end, so a failure leaves the previous leaderboard untouched; ``out``
must be new, empty or a previous build (nothing else in it is deleted or overwritten).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from mgbench.errors import InputError, refuse_under_a_file
from mgbench.report import plots
from mgbench.report.leaderboard import (
    HEADLINE_EPS,
    Entry,
    attack_columns,
    collect,
    robustbench_json,
    summary_frame,
)
from mgbench.report.render import dataset_tables, html_table, markdown
from mgbench.report.screenshots import SIZES, shoot

_SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th) {
    th.addEventListener('click', function () {
      var col = Number(th.dataset.col);
      var ascending = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (other) { other.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      // A grouped table (a model with its seed cards beneath) sorts its tbodies by their first row.
      var grouped = table.classList.contains('grouped');
      var body = grouped ? table : table.tBodies[0];
      var rows = Array.prototype.slice.call(grouped ? table.tBodies : body.rows);
      rows.sort(function (a, b) {
        if (grouped) { a = a.rows[0]; b = b.rows[0]; }
        var x = a.cells[col], y = b.cells[col];
        var missingX = x.textContent === '-', missingY = y.textContent === '-';
        if (missingX || missingY) { return missingX - missingY; }
        var order = x.dataset.kind === 'num' && y.dataset.kind === 'num'
          ? Number(x.dataset.sort) - Number(y.dataset.sort)
          : x.dataset.sort.localeCompare(y.dataset.sort);
        return ascending ? order : -order;
      });
      if (grouped) {
        var sorted = Array.prototype.slice.call(table.tBodies).sort(function (a, b) {
          return rows.indexOf(a) - rows.indexOf(b); });
        sorted.forEach(function (group) { table.appendChild(group); });
        return;
      }
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; padding: 0 1em; max-width: 75em; color: #222;
       overflow-wrap: break-word; }
div.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0 2em; font-size: 0.85em; }
table.headline td:first-child { white-space: nowrap; }
table.grouped tr.seed { display: none; color: #555; }
table.grouped tbody:has(details[open]) tr.seed { display: table-row; }
table.grouped tr.seed td:first-child { padding-left: 1.6em; }
table.grouped tbody { border-bottom: 2px solid #ccc; }
details summary { cursor: pointer; } details .seeds { display: none; }
td.good { font-weight: 600; }
td[title] { text-decoration: underline dotted #999; }
td.bad { color: #b00020; font-weight: 600; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
td[data-kind=num], table.headline td { white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
.note { color: #555; max-width: 60em; font-size: 0.85em; }
figure { margin: 1em 0 2em; } svg, figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.85em; max-width: 60em; }
details.note { margin: -0.5em 0 0.5em; } details.note summary { color: #333; }
@media (max-width: 40em) {
  body { padding: 0 0.6em; } h1 { font-size: 1.5em; }
  figure { overflow-x: auto; } figure svg { min-width: 36em; }  /* a plot stays legible; its box scrolls */
}
"""


@dataclass
class BuildResult:
    out: Path
    files: list[Path]
    entries: list[Entry]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def build(frame: pd.DataFrame, out: Path, glimpse_dir: Path | None = None, source: str = "",
          force: bool = False, screenshots: bool = False) -> BuildResult:
    """Write the leaderboard for ``frame`` (the store's rows) into ``out``; with ``screenshots``,
    also the page as headless Chromium shows it at 1280 and 390 px (report/screenshots.py).

    ``out`` may be new, empty, or a previous build (its marker file, or the layout of a build
    made before the marker); a folder holding anything else is refused before anything is
    written, unless ``force``: then the previous build's own files are replaced and the others
    kept. Nothing that this function did not write is deleted or overwritten."""
    if frame.empty:
        raise InputError("the results store holds no rows: run a suite first (e.g. `make demo`)")
    out = Path(os.path.abspath(out))  # also '.' and 'x/..', which have no name
    own = _check_out(out, force)
    entries = collect(frame)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _write_all(entries, staging, glimpse_dir, _origin(frame, source))
        if screenshots:
            shoot(staging / "index.html", staging)
        written = sorted(p.name for p in staging.iterdir())
        (staging / MARKER).write_text(_MARKER_TEXT + "".join(f"{name}\n" for name in written))
        _swap_in(staging, out, own)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = sorted(p for name in (*written, MARKER) for p in [out / name, *(out / name).rglob("*")] if p.is_file())
    return BuildResult(out, files, entries)


# The file that marks a folder as a leaderboard build, listing the entries the build wrote.
MARKER = ".mgbench-leaderboard"
_MARKER_TEXT = "# written by `mgbench leaderboard`: the entries it wrote here (replaced by the next build)\n"
# A build made before the marker existed (or a checkout whose marker was lost): these three files,
# and whatever of this list is there, the screenshots included.
_LEGACY_FILES = ("index.html", "index.md", "leaderboard.csv")
_LEGACY_ENTRIES = (*_LEGACY_FILES, "json", "plots", "glimpses", *(name for name, _, _ in SIZES))


def _previous_build(out: Path) -> set[str]:
    """The entries of ``out`` that a previous build wrote (empty when it is none)."""
    marker = out / MARKER
    if marker.is_file():
        listed = {line.strip() for line in marker.read_text(errors="replace").splitlines()}
        return {name for name in listed if name and not name.startswith("#") and "/" not in name} | {MARKER}
    if all((out / name).is_file() for name in _LEGACY_FILES):
        return set(_LEGACY_ENTRIES)
    return set()


def _check_out(out: Path, force: bool) -> set[str]:
    """Refuse an output folder that cannot take the build; the names of a previous build's entries."""
    try:
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} is a file: pass a folder (new, empty, or a previous leaderboard)")
        refuse_under_a_file(out, f"--out {out}", "another folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        present = {p.name for p in out.iterdir()} if out.is_dir() else set()
    except OSError as exc:
        raise InputError(f"--out {out} cannot be used ({exc.strerror}): pass a writable folder") from exc
    if not os.access(out.parent, os.W_OK) or (out.is_dir() and not os.access(out, os.W_OK)):
        raise InputError(f"--out {out} is not writable: pass a writable folder")
    own = _previous_build(out) & present
    foreign = sorted(present - own)
    if foreign and not force:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        what = "a previous leaderboard and files" if own else "files"
        raise InputError(f"--out {out} holds {what} that `mgbench leaderboard` did not write ({shown}): pass a "
                         "new or empty folder, or --force to write the leaderboard beside them (they are kept)")
    clash = sorted(set(foreign) & {*_LEGACY_ENTRIES, MARKER})
    if clash:
        raise InputError(f"--out {out} holds {', '.join(clash)}, which `mgbench leaderboard` did not write and "
                         "would overwrite: pass a new or empty folder")
    return own


def _swap_in(staging: Path, out: Path, own: set[str]) -> None:
    """Put the staged build in place of ``out``: a new folder is the staging folder renamed (with
    the mode a new folder gets); into an existing one (its mode and other files kept) the previous
    build's entries are moved aside, the new ones moved in, and the old ones deleted at the end."""
    if not out.exists():
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        staging.rename(out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}-previous-", dir=out.parent))
    moved: list[str] = []
    placed: list[str] = []
    try:
        for name in sorted(own):
            (out / name).rename(aside / name)
            moved.append(name)
        for path in sorted(staging.iterdir()):
            path.rename(out / path.name)
            placed.append(path.name)
    except BaseException:  # put the previous build back
        for name in placed:
            (out / name).rename(staging / name)
        for name in moved:
            (aside / name).rename(out / name)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    staging.rmdir()


def _origin(frame: pd.DataFrame, source: str) -> str:
    """Where the numbers come from, dated by the newest result rather than the build time, so an
    unchanged store gives byte-identical files."""
    newest = frame["finished_at"].dropna().max() if "finished_at" in frame else None
    return (source or "the store") + (f" (newest result {newest})" if isinstance(newest, str) else "")


def _write_all(entries: list[Entry], out: Path, glimpse_dir: Path | None, origin: str) -> None:
    datasets = sorted({e.dataset for e in entries})
    md = [f"# mgbench leaderboard\n\nDerived by `mgbench leaderboard` from {origin}; "
          "every number is derived from the tidy results table. Plots and the sortable page: `index.html`.\n"]
    page: list[str] = []
    table_index = 0
    for dataset in datasets:
        mine = [e for e in entries if e.dataset == dataset]
        md.append(f"## {dataset}\n")
        page.append(f"<h2>{html.escape(dataset)}</h2>")
        figures = _figures(dataset, mine)
        for table in dataset_tables(dataset, mine):
            md.append(markdown(table))
            if table.html:
                page.append(html_table(table, f"table{table_index}"))
                table_index += 1
            for name, caption, figure in figures.pop(table.anchor, []):
                png, svg = plots.save(figure, out / "plots" / name)
                md.append(f"![{caption.split('. ')[0]}](plots/{png.name})\n\n*{caption}*\n")
                page.append(f"<figure>{_strip_xml_header(svg)}<figcaption>{html.escape(caption)}</figcaption></figure>")
        columns = attack_columns(mine)
        for entry in mine:
            target = out / "json" / _slug(dataset) / f"{_slug(entry.model)}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(robustbench_json(entry, columns), indent=2) + "\n")
    pictures = sorted(glimpse_dir.glob("*.png")) if glimpse_dir and glimpse_dir.is_dir() else []
    if pictures:
        md.append("## Where the models look\n")
        page.append("<h2>Where the models look</h2>")
        for picture in pictures:
            target = out / "glimpses" / picture.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(picture, target)
            caption = f"Where {picture.stem} looks (`mgbench glimpses`; the caption in the picture says how)"
            md.append(f"![where {picture.stem} looks](glimpses/{picture.name})\n\n*{caption}*\n")
            # Linked, not inlined: photographs dwarf the rest of the page (the folder travels whole).
            page.append(f'<figure><img alt="{html.escape(caption)}" src="glimpses/{html.escape(picture.name)}" '
                        f'loading="lazy"><figcaption>{html.escape(caption)}</figcaption></figure>')
    (out / "index.md").write_text("\n".join(md))
    summary_frame(entries).to_csv(out / "leaderboard.csv", index=False)
    (out / "index.html").write_text(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>mgbench leaderboard</title>"
        f"<style>{_STYLE}</style></head><body><h1>mgbench leaderboard</h1>"
        f"<p class=\"note\">Derived by <code>mgbench leaderboard</code> from {html.escape(origin)}. "
        "Click a column header to sort.</p>"
        + "".join(page) + f"<script>{_SORT_SCRIPT}</script></body></html>\n"
    )


def _figures(dataset: str, entries: list[Entry]) -> dict[str, list[tuple[str, str, Figure]]]:
    """The plots of one dataset as (file stem, caption, figure), keyed by the table they follow."""
    slug = _slug(dataset)
    unreliable = "(unreliable): a seed failed a gradient-masking check, its robust numbers are upper bounds."
    colour = "One colour per model (architecture + training), the same in every plot"
    compute, compute_note = plots.accuracy_vs_compute(entries, dataset)
    robust, robust_note = plots.robust_vs_eps(entries, dataset)
    candidates: list[tuple[str, str, Figure | None, str]] = [
        ("headline", f"accuracy_vs_gmacs_{slug}", compute,
         f"{dataset}: what each GMAC of compute buys, clean, under corruption and under attack. Top-1 accuracy "
         f"against the cumulative GMACs per image after each glimpse: anytime models (MGNet) are curves through "
         f"their glimpses, which a reader can stop early; other models are one point (diamond: the mean over the "
         f"seeds, dashes: each seed). Higher and further left is better; the gap between a model's clean and "
         f"robust panels is what an attack takes away at that compute. {colour}; the band spans the seeds' lowest "
         f"to highest value. Robust: the per-example worst case over every attack run at L-inf {HEADLINE_EPS}. "
         f"{unreliable}{compute_note}"),
        ("headline", f"robust_vs_eps_{slug}", robust,
         f"{dataset}: how fast robust accuracy falls as the attack budget grows. Robust top-1 (the per-example "
         f"worst case over every attack run at that eps, L-inf, honest protocol) against eps on a log axis: a "
         f"line per model through the mean over its seeds, the band from its lowest to its highest seed, the "
         f"marker the strongest attack that every seed's worst case covers at that eps (a stronger attack gives a "
         f"lower, more trustworthy number). {colour}. {unreliable}{robust_note}"),
    ]
    heatmaps = plots.corruption_heatmaps(entries)
    if heatmaps is not None:
        candidates.append(("corruptions", f"corruptions_{slug}", heatmaps[0],
                           f"{dataset}: which corruptions hurt and how much more at each severity. Top-1 % per "
                           "corruption (rows) and severity (columns), one panel per model (the mean over its "
                           "seeds)."))
    figures: dict[str, list[tuple[str, str, Figure]]] = {}
    for anchor, name, figure, caption in candidates:
        if figure is not None:
            figures.setdefault(anchor, []).append((name, caption, figure))
    return figures


def _strip_xml_header(svg: str) -> str:
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
