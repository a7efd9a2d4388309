"""The one exception type for bad user input.

Library functions raise :class:`InputError` with a one-line message that names the problem
and the fix; the CLI prints it as ``error: ...`` and exits with code 2, before anything is
written.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input from the user (a path, a name, a number, a checkpoint)."""


def refuse_under_a_file(path: Path, label: str, fix: str) -> None:
    """A one-line error when a parent of the output ``path`` is a file (the first existing parent
    decides); ``label`` names the path in the message, ``fix`` says what to pass instead."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{label} is under {parent}, which is a file: pass {fix}")
            return
