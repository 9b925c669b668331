"""Progress (rich, imported only when drawn) and colour on a TTY; nothing of either in pipes."""

from __future__ import annotations

import logging
import os
import sys
import threading

from cema._paths import env_yes_no

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO

#: SGR codes of what is coloured: labels of errors, hints and warnings, plan and lock changes
_STYLES = {
    "error": "1;31",
    "hint": "36",
    "warning": "33",
    "added": "32",
    "changed": "33",
    "removed": "31",
    "dim": "2",
}
#: at most this many download bars at once (the others wait, hidden, for a free row)
MAX_DOWNLOAD_ROWS = 6

_mode: str | None = None  # ``--color``, once parsed
_reporters: list[RichReporter] = []


def set_color(mode: str) -> None:
    """Use ``mode`` (``--color``) for the rest of the command."""
    global _mode  # noqa: PLW0603 - one setting per process, set once by the parser's result
    _mode = mode


def color_on(stream: TextIO) -> bool:
    """Colour for ``stream``: ``--color``/``$CEMA_COLOR`` ``always`` or ``never``; ``auto``: a
    TTY, no ``$NO_COLOR`` (any value but empty) and a ``$TERM`` other than ``dumb``."""
    mode = _mode or os.environ.get("CEMA_COLOR", "").strip().lower()
    if mode in ("always", "never"):
        return mode == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def paint(text: str, role: str | None, stream: TextIO) -> str:
    """``text`` in the colour of ``role`` when ``stream`` gets colour, else as it is."""
    if role is None or not color_on(stream):
        return text
    return f"\033[{_STYLES[role]}m{text}\033[0m"


def change_role(line: str) -> str | None:
    """The colour of a lock-change line (``+ name 1.0``, ``- name``, ``~ name a -> b``)."""
    return {"+": "added", "-": "removed", "~": "changed"}.get(line.lstrip()[:1])


class LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records on the ``sys.stderr`` of the moment (a progress display redirects it while
    drawn, so that lines go above the bars), the level in colour on a TTY."""

    _ROLES = {"WARNING": "warning", "ERROR": "error", "CRITICAL": "error"}

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def format(self, record: logging.LogRecord) -> str:
        """``LEVEL: message``, the level coloured."""
        text = super().format(record)
        role = self._ROLES.get(record.levelname)
        if role is None:
            return text
        return paint(record.levelname, role, sys.stderr) + text[len(record.levelname) :]

    def emit(self, record: logging.LogRecord) -> None:
        """Write to the current ``sys.stderr``."""
        self.stream = sys.stderr
        super().emit(record)


def progress_on(args: argparse.Namespace) -> bool:
    """Draw progress: stderr is a TTY (``$TERM`` not ``dumb``), and neither ``-q``,
    ``--no-progress``/``$CEMA_NO_PROGRESS`` nor ``$CI`` say otherwise."""
    ci = env_yes_no("CI") is not False  # any value but a plain no means CI
    if args.quiet or args.no_progress or ci or os.environ.get("TERM") == "dumb":
        return False
    return sys.stderr.isatty()


def reporter_for(args: argparse.Namespace) -> RichReporter | None:
    """The progress display for this command, or None where none is drawn."""
    return RichReporter(color=color_on(sys.stderr)) if progress_on(args) else None


def stop_all() -> None:
    """Take every display off the screen (before an error is printed, and at exit)."""
    for reporter in list(_reporters):
        reporter.stop()


def _seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def _make_progress(*, color: bool) -> Any:
    """rich's ``Progress`` on stderr: spinner, what, a bar (none for a spinner), the detail
    (bytes and rate of a download, steps of a phase, time of a spinner)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )
    from rich.text import Text

    class Bar(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self.bar = BarColumn(bar_width=30)

        def render(self, task: Task) -> Any:
            return Text("") if task.fields.get("kind") == "spin" else self.bar.render(task)

    class Detail(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self.size, self.rate = DownloadColumn(), TransferSpeedColumn()
            self.steps, self.elapsed = MofNCompleteColumn(), TimeElapsedColumn()

        def render(self, task: Task) -> Any:
            kind = task.fields.get("kind")
            if kind == "download":
                return Text.assemble(self.size.render(task), " ", self.rate.render(task))
            if kind == "phase":
                return Text.assemble(self.steps.render(task), " ", str(task.fields["step"]))
            return self.elapsed.render(task)

    console = Console(stderr=True, color_system="auto" if color else None, highlight=False)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        Bar(),
        Detail(),
        console=console,
        transient=True,
        redirect_stdout=False,  # stdout may be a pipe: what goes there stays there
    )


class RichReporter:
    """Spinners while solving and building, a bar per download (bytes and rate), a linking bar,
    and a line per finished solve and env. rich is imported at the first event, so a sync
    with nothing to do never loads it."""

    def __init__(self, *, color: bool) -> None:
        self._color = color
        self._lock = threading.RLock()
        self._progress: Any = None
        self._tasks: dict[tuple[str, str], Any] = {}
        self._waiting: list[tuple[str, str]] = []  # downloads without a row yet

    # -- the display ----------------------------------------------------------------------

    def _display(self) -> Any:
        if self._progress is None:
            self._progress = _make_progress(color=self._color)
            _reporters.append(self)
        if not self._progress.live.is_started:
            self._progress.start()
        return self._progress

    def _add(self, key: tuple[str, str], description: str, **fields: Any) -> None:
        with self._lock:
            progress = self._display()
            self._tasks[key] = progress.add_task(description, **fields)

    def _remove(self, key: tuple[str, str], line: str | None = None) -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
            if self._progress is None:
                return
            if task is not None:
                self._progress.remove_task(task)
                self._progress.refresh()  # the line goes above what is left, not a stale frame
            if line is not None:
                self._progress.console.print(line, highlight=False)
            if not self._tasks:  # nothing is going on: off the screen until the next event
                self.stop()

    def stop(self) -> None:
        """Take the display off the screen (the next event draws it again)."""
        with self._lock:
            if self._progress is not None and self._progress.live.is_started:
                self._progress.stop()

    # -- solving and building -------------------------------------------------------------

    def solving(self, *, env: str, platform: str) -> None:
        """A spinner: ``resolving ENV for PLATFORM``."""
        self._add(("solve", f"{env}/{platform}"), f"resolving {env} for {platform}", kind="spin")

    def solved(self, *, env: str, platform: str, seconds: float) -> None:
        """``resolved ENV for PLATFORM in 120ms``."""
        line = f"[green]resolved[/] {env} for {platform} [dim]in {_seconds(seconds)}[/]"
        self._remove(("solve", f"{env}/{platform}"), line)

    def building(self, *, env: str) -> None:
        """A spinner: ``building ENV``."""
        self._add(("build", env), f"building {env}", kind="spin")

    def built(self, *, env: str, seconds: float) -> None:
        """``built ENV in 2.3s``."""
        self._remove(("build", env), f"[green]built[/] {env} [dim]in {_seconds(seconds)}[/]")

    # -- a builder's phase and downloads --------------------------------------------------

    def start(self, *, total: int, label: str) -> None:
        """The linking bar."""
        self._add(("phase", ""), label, total=total, kind="phase", step="")

    def advance(self, *, step: str) -> None:
        """One more package linked."""
        with self._lock:
            task = self._tasks.get(("phase", ""))
            if task is not None:
                self._progress.update(task, advance=1, step=step)

    def finish(self) -> None:
        """The linking bar goes."""
        self._remove(("phase", ""))

    def downloading(self, *, package: str, done: int, total: int | None) -> None:
        """A bar per package: bytes, total and rate."""
        key = ("download", package)
        with self._lock:
            if key not in self._tasks:
                rows = len(self._tasks_of("download")) - len(self._waiting)
                visible = rows < MAX_DOWNLOAD_ROWS
                self._add(key, package, total=total, kind="download", visible=visible)
                if not visible:
                    self._waiting.append(key)
            self._progress.update(self._tasks[key], completed=done, total=total)

    def downloaded(self, *, package: str) -> None:
        """The package's bar goes; a waiting one takes its row."""
        key = ("download", package)
        with self._lock:
            if key in self._waiting:
                self._waiting.remove(key)
            elif self._waiting and key in self._tasks:
                self._progress.update(self._tasks[self._waiting.pop(0)], visible=True)
            self._remove(key)

    def _tasks_of(self, kind: str) -> list[tuple[str, str]]:
        return [k for k in self._tasks if k[0] == kind]


__all__ = [
    "LogHandler",
    "RichReporter",
    "change_role",
    "color_on",
    "paint",
    "progress_on",
    "reporter_for",
    "set_color",
    "stop_all",
]
