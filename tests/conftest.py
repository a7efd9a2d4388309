"""Shared fixtures. The embedded digits are built once into the user cache (~18 s) and reused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

# pytest-xdist's workers (`make test` runs one per core) set COLUMNS=80 although their output is no
# terminal; the CLI would then wrap its output at 80 columns instead of the 200 it uses in pipes and
# CI logs, and what a test reads would depend on how pytest was started. Before the CLI is imported.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

import pytest  # noqa: E402
import torch  # noqa: E402
from support import single_thread  # noqa: E402

from mgbench.cli import main  # noqa: E402

# One pytest-xdist worker per core: each gets its share of the cores, not torch's default of all.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "results.sqlite"


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one thread: the tests' tensors are small, and on a machine shared with other
    jobs two OpenMP threads spin against each other (the MGNet tests ran 5x slower)."""
    with single_thread():
        yield


@pytest.fixture(autouse=True)
def _torch_seed() -> None:
    """Every test starts from one torch seed, whichever worker runs it and whatever ran before, so
    a test that does not fix its own seed is deterministic; ``MGBENCH_TEST_SEED=N`` changes it,
    to show that no assertion about an attack's or check's outcome rests on one lucky draw."""
    torch.manual_seed(int(os.environ.get("MGBENCH_TEST_SEED", "0")))
