"""Shared fixtures. The embedded digits are built once into the user cache (~18 s) and reused."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from mgbench.cli import main


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
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
