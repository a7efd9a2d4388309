"""Progress of long work: library code reports it, whoever runs the library decides how it shows.

Library code opens nested tasks and advances them::

    with progress.task("pgd", total=steps) as bar:
        for step in range(steps):
            ...
            bar.advance(status=f"{left} left")

Nothing is shown unless a reporter is installed (``with progress.reporting(reporter):``), so
library calls and tests stay silent. The CLI installs one per command (:func:`for_console`):
rich bars on a terminal, a plain log line at most every ``interval`` seconds elsewhere (CI,
batch jobs, pipes), nothing with ``--quiet``. Only rank 0 of a torchrun job reports.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import IO, TYPE_CHECKING, Iterable, Iterator, TypeVar

from mgbench import distributed
from mgbench.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")


class Task:
    """One piece of work: ``completed`` of ``total`` (None: unknown), plus a short status."""

    def __init__(self, reporter: "Reporter", description: str, total: int | None) -> None:
        self.reporter, self.description, self.total = reporter, description, total
        self.completed, self.status = 0, ""
        self.started = time.monotonic()
        self.failed = False  # left by an exception

    def advance(self, n: int = 1, status: str | None = None) -> None:
        self.update(completed=self.completed + n, status=status)

    def update(self, *, completed: int | None = None, total: int | None = None, status: str | None = None,
               description: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if status is not None:
            self.status = status
        if description is not None:
            self.description = description
        self.reporter.updated(self)

    def eta(self) -> float | None:
        """Seconds left at the average pace so far (None before the first unit finishes)."""
        if not self.total or not self.completed:
            return None
        elapsed = time.monotonic() - self.started
        return max(0.0, elapsed / self.completed * (self.total - self.completed))

    def text(self) -> str:
        """``description i/N[, status][, ETA]``, as a log line shows it."""
        count = f" {self.completed}/{self.total}" if self.total else (f" {self.completed}" if self.completed else "")
        parts = [f"{self.description}{count}"]
        if self.status:
            parts.append(self.status)
        eta = self.eta()
        if eta is not None and self.completed < (self.total or 0):
            parts.append(f"ETA {duration(eta)}")
        return ", ".join(parts)


class Reporter:
    """Shows nothing: the default, and what ``--quiet`` installs."""

    def opened(self, task: Task) -> None:
        """A task started."""

    def updated(self, task: Task) -> None:
        """A task moved on; called often, so keep it cheap."""

    def closed(self, task: Task) -> None:
        """A task finished (or was abandoned by an exception)."""


class LogReporter(Reporter):
    """Plain lines for logs: once work has gone on for ``interval`` seconds, one line at most every
    ``interval`` seconds naming every open task, outermost first; then a line when the outermost
    task ends. Work shorter than ``interval`` prints nothing (so an input error stays one line)."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 15.0) -> None:
        self.stream, self.interval = stream, interval
        self.tasks: list[Task] = []
        self.last = time.monotonic()
        self.wrote = False

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")
        stream.flush()
        self.last, self.wrote = time.monotonic(), True

    def opened(self, task: Task) -> None:
        if not self.tasks and not self.wrote:
            self.last = time.monotonic()  # the interval counts from the start of the work
        self.tasks.append(task)
        self.updated(task)

    def updated(self, task: Task) -> None:
        if time.monotonic() - self.last >= self.interval:
            self._write(" | ".join(t.text() for t in self.tasks))

    def closed(self, task: Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        if not self.tasks and self.wrote and not task.failed:
            self._write(f"{task.text()}; done in {duration(time.monotonic() - task.started)}")
            self.wrote = False


class RichReporter(Reporter):
    """Live rich bars on a terminal, one line per open task (removed when it ends)."""

    def __init__(self, console: "Console") -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                                 console=console, transient=True)
        self.ids: dict[int, int] = {}

    def opened(self, task: Task) -> None:
        if not self.ids:
            self.progress.start()
        self.ids[id(task)] = self.progress.add_task(task.description, total=task.total, status=task.status)

    def updated(self, task: Task) -> None:
        if id(task) in self.ids:
            self.progress.update(self.ids[id(task)], completed=task.completed, total=task.total,
                                 description=task.description, status=task.status)

    def closed(self, task: Task) -> None:
        if id(task) in self.ids:
            self.progress.remove_task(self.ids.pop(id(task)))
        if not self.ids:
            self.progress.stop()


_current: Reporter = Reporter()


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[Reporter]:
    """Install ``reporter`` for the duration (None: keep the current one)."""
    global _current
    previous = _current
    _current = reporter if reporter is not None else previous
    try:
        yield _current
    finally:
        _current = previous


@contextlib.contextmanager
def task(description: str, total: int | None = None) -> Iterator[Task]:
    """A task reported to the current reporter while the block runs."""
    reporter = _current
    current = Task(reporter, description, total)
    reporter.opened(current)
    try:
        yield current
    except BaseException:
        current.failed = True
        raise
    finally:
        reporter.closed(current)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``items``, one task step each."""
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    with task(description, total) as current:
        for item in items:
            yield item
            current.advance()


def for_console(console: "Console", quiet: bool = False) -> Reporter:
    """What a command shows on ``console`` (stderr): bars on a terminal, log lines elsewhere (every
    ``$MGBENCH_PROGRESS_SECONDS``, default 15), nothing when ``quiet`` or on a torchrun rank other than 0."""
    if quiet or not distributed.is_main():
        return Reporter()
    if console.is_terminal:
        return RichReporter(console)
    seconds = os.environ.get("MGBENCH_PROGRESS_SECONDS", "15")
    try:
        interval = float(seconds)
    except ValueError:
        raise InputError(f"MGBENCH_PROGRESS_SECONDS must be a number of seconds, not {seconds!r}") from None
    return LogReporter(console.file, interval)


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
