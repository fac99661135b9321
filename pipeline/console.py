"""Terminal output for the CLI: log lines and progress bars with ETA (rich)."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
# ``extra=`` for a log record the log file keeps but the terminal skips: the
# CLI's closing lines say it once (a stage's failure, QC's failed checks).
FILE_ONLY = {"file_only": True}


def configure_logging(quiet: bool) -> None:
    """Console log for the 'dubprep' logger: warnings only when ``quiet``."""
    logger = logging.getLogger("dubprep")
    logger.setLevel(logging.DEBUG)
    for handler in list(logger.handlers):
        if isinstance(handler, RichHandler):
            logger.removeHandler(handler)
    handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    handler.addFilter(lambda record: not getattr(record, "file_only", False))
    logger.addHandler(handler)
    logger.propagate = False


class RichProgress:
    """A progress bar with elapsed time and ETA for one stage."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: int) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=max(total, 1))

    def advance(self, amount: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
