"""Mutation testing of the modules that produce numbers (``make mutate``), with mutmut.

Each group names the modules to mutate and the fast tests that must catch their mutants. A group
runs in its own scratch copy of the repository (``--work``, default a temporary folder), so the
checkout is never touched and each group gets its own test selection; mutmut copies the sources
again into ``mutants/`` there, changes one operator, constant or argument at a time, and runs
only the selected tests that reach the mutated function. Survivors (mutants no test catches) are
printed with their diff and written to ``<work>/<group>/survivors.txt``; each must either get a
test or be explained as equivalent in ``results/mutation.md``.

    python tests/mutate.py corruption-metrics attack-examples   # the groups to run
    python tests/mutate.py --list                                # groups, modules and tests

Not a test module (no ``test_`` prefix). CPU: mutmut's ``--max-children`` (default 1) processes,
one torch thread each; corruption-metrics (236 mutants) takes about 4 minutes on a loaded
2-core machine, attack-examples about 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "corruption-metrics": (["mgbench/corruptions/metrics.py"], ["tests/test_corruptions_metrics.py"]),
    "attack-examples": (["mgbench/attacks/examples.py"],
                        ["tests/test_worst_case.py", "tests/test_attack_spec.py"]),
    "wilson": (["mgbench/metrics.py"], ["tests/test_metrics.py", "tests/test_worst_case.py"]),
    "corruption-names": (["mgbench/corruptions/names.py"], ["tests/test_corruptions_names.py"]),
    "corruption-severities": (["mgbench/corruptions/torch_backend.py"], ["tests/test_corruptions_backends.py"]),
    "attack-bounds": (["mgbench/attacks/bounds.py"], ["tests/test_attack_bounds.py", "tests/test_attack_pgd.py"]),
    "attack-gradient": (["mgbench/attacks/gradient.py"],
                        ["tests/test_attack_objective.py", "tests/test_attack_projection.py",
                         "tests/test_attack_pgd.py"]),
    "verdict": (["mgbench/attacks/verdict.py"],
                ["tests/test_worst_case.py", "tests/test_attack_spec.py", "tests/test_verdict_checks.py",
                 "tests/test_verdict_facts.py", "tests/test_attack_verdict.py"]),
    "verdict-checks": (["mgbench/attacks/checks.py"],
                       ["tests/test_checks_units.py", "tests/test_verdict_checks.py", "tests/test_verdict_facts.py",
                        "tests/test_worst_case.py", "tests/test_attack_verdict.py"]),
    "attack-spec": (["mgbench/attacks/eps.py", "mgbench/attacks/spec.py", "mgbench/attacks/variants.py"],
                    ["tests/test_attack_spec_units.py", "tests/test_attack_spec.py", "tests/test_checks_units.py",
                     "tests/test_attack_condition_units.py", "tests/test_attack_pgd.py"]),
    # the summary's own unit test; the end-to-end mCE test (test_corruptions_runner.py, 20 s a run)
    # pins the same arithmetic through a real run and is left to make test
    "corruption-condition": (["mgbench/corruptions/condition.py"],
                             ["tests/test_corruption_summary.py", "tests/test_corruption_condition_units.py",
                              "tests/test_cellkey.py"]),
    "attack-condition": (["mgbench/attacks/condition.py", "mgbench/attacks/noise.py", "mgbench/attacks/protocols.py"],
                         ["tests/test_attack_condition_units.py", "tests/test_attack_spec_units.py",
                          "tests/test_attack_pgd.py::test_mgnet_paper_protocol_reproduces_the_official_loop"]),
    # around a scripted stand-in for pyautoattack; test_attack_autoattack.py (the real library,
    # 1.5 min) checks the staged cascade equals the library's and is left to make test
    "attack-autoattack": (["mgbench/attacks/autoattack.py"], ["tests/test_autoattack_units.py"]),
    "data-spec": (["mgbench/data/spec.py"],
                  ["tests/test_data_spec.py", "tests/test_data.py", "tests/test_cell_keys.py"]),
    # The store's crash and concurrency tests (a killed process, two writers: 20-60 s each) and
    # the merge of two attack shards are left out: a surviving mutant of the store's core would
    # run them for every mutant, hours in all; test_store_units.py pins what they would.
    "store": (["mgbench/store.py"],
              ["tests/test_store_units.py", "tests/test_cellkey.py", "tests/test_cell_keys.py",
               "tests/test_merge.py::test_merge_shards",
               "tests/test_merge.py::test_summaries_that_cannot_be_recomputed_are_kept_or_dropped",
               *(f"tests/test_store.py::{name}" for name in (
                   "test_write_read_and_filters", "test_duplicates_are_kept_once_and_replace_is_atomic",
                   "test_a_failing_cell_leaves_nothing", "test_store_path_errors", "test_export_csv_and_parquet",
                   "test_a_foreign_sqlite_file_is_refused_untouched",
                   "test_a_store_under_a_file_or_in_a_read_only_folder_is_one_line",
               ))]),
    "cell-key": (["mgbench/cellkey.py"],
                 ["tests/test_store_units.py", "tests/test_cell_keys.py", "tests/test_cellkey.py"]),
    "flops": (["mgbench/flops.py"],
              ["tests/test_flops_units.py", "tests/test_flops_by_hand.py", "tests/test_flops.py"]),
}
COPY = ("mgbench", "tests", "models", "benchmarks", "setup.cfg", "pyproject.toml")


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def prepare(group: str, work: Path, resume: bool = False) -> Path:
    """A scratch copy of the repository with mutmut configured for ``group``.

    With ``resume``, an existing copy keeps its ``mutants/`` folder (mutmut's results so far) and
    gets the checkout's current sources and tests: mutmut then retests only the mutants not yet
    decided and those of functions whose source changed, and collects coverage for new tests.
    """
    modules, tests = GROUPS[group]
    folder = work / group
    if folder.exists() and not (resume and (folder / "mutants").is_dir()):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "mutants")
    for name in COPY:
        source = ROOT / name
        if source.is_dir():
            if (folder / name).exists():
                shutil.rmtree(folder / name)
            shutil.copytree(source, folder / name, ignore=ignore)
        else:
            shutil.copy2(source, folder / name)
    config = (
        "\n[tool.mutmut]\n"
        'source_paths = ["mgbench"]\n'
        f"only_mutate = {_toml_list(modules)}\n"
        f"also_copy = {_toml_list(['models', 'benchmarks'])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not slow", "-q"]\n'
    )
    with open(folder / "pyproject.toml", "a") as handle:
        handle.write(config)
    return folder


def _mutmut(folder: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=folder, env=env, capture_output=True,
                          text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"mutmut {' '.join(args)} failed in {folder}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _statuses(folder: Path) -> dict[str, str]:
    """Each mutant's status as mutmut lists it (``killed``, ``survived``, ``no tests``, ...)."""
    if not (folder / "mutants").is_dir():
        return {}
    listing = _mutmut(folder, "results", "--all", "true", check=False)
    return {match.group(1): match.group(2) for line in listing.splitlines()
            if (match := re.match(r"\s*(\S+): (.+)$", line))}


def run(group: str, work: Path, max_children: int, resume: bool = False) -> list[str]:
    earlier = _statuses(work / group) if resume else {}
    folder = prepare(group, work, resume)
    _mutmut(folder, "run", "--max-children", str(max_children), check=False)
    # mutmut lets a decided result stand; survivors of the earlier run are retested by name so
    # that tests added since get their chance to kill them, and so are its timeouts (a test that
    # hung, e.g. on a thread pool the forked mutant process did not inherit, proves nothing) and
    # the mutants no test reached then.
    retest = [name for name, status in _statuses(folder).items()
              if status in ("survived", "timeout", "no tests") and earlier.get(name) == status]
    if retest:
        _mutmut(folder, "run", "--max-children", str(max_children), *retest, check=False)
    statuses = _statuses(folder)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = [name for name, status in statuses.items() if status == "survived"]
    report = [f"# {group}: {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}"]
    for name in survivors:
        diff = [line for line in _mutmut(folder, "show", name).splitlines()
                if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        report += [f"## {name}", *diff]
    (folder / "survivors.txt").write_text("\n".join(report) + "\n")
    print("\n".join(report), flush=True)
    return survivors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run (default: all): {', '.join(GROUPS)}")
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutmut workers (default 1)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the runs already in --work (an interrupted run, or survivors to retest "
                             "after new tests) instead of starting over")
    args = parser.parse_args()
    if args.list:
        for name, (modules, tests) in GROUPS.items():
            print(f"{name}: {' '.join(modules)}  <-  {' '.join(tests)}")
        return
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        raise SystemExit(f"error: unknown group {unknown[0]!r}: use one of {', '.join(GROUPS)}")
    if args.resume and args.work is None:
        raise SystemExit("error: --resume needs --work, the folder of the runs to continue")
    work = args.work or Path(tempfile.mkdtemp(prefix="mgbench-mutate-"))
    survived = {group: run(group, work, args.max_children, args.resume) for group in args.groups or list(GROUPS)}
    print(f"survivors: {sum(map(len, survived.values()))} ({work})")


if __name__ == "__main__":
    main()
