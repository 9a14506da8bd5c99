"""Progress, logging and cancellation for long jobs, shared by the CLI and the worker."""

from __future__ import annotations

import sys
import threading
import time
import warnings
from typing import Callable, Iterable, Iterator, Optional, TypeVar

from .errors import Cancelled, Words, join, parts, render

T = TypeVar("T")
Sink = Callable[[dict], None]


class Progress:
    """Reports percent done with an ETA, passes log lines on, and raises Cancelled when asked to stop.

    `sub(a, b)` gives a child whose 0-100 maps onto this one's a-b, so a task can hand
    one part of its bar to a step without the step knowing where it sits.
    """

    def __init__(self, sink: Optional[Sink] = None, cancel: Optional[threading.Event] = None,
                 start: float = 0.0, end: float = 100.0):
        self._sink = sink or (lambda event: None)
        self.cancel_event = cancel or threading.Event()
        self._start, self._end = start, end

    def emit(self, event: dict) -> None:
        self._sink(event)

    def update(self, percent: float, message: str = "") -> None:
        self.check_cancelled()
        value = self._start + (self._end - self._start) * max(0.0, min(100.0, percent)) / 100.0
        self.emit({"event": "progress", "percent": round(value, 2), "message": message})

    def log(self, message: str, level: str = "info") -> None:
        """A log line; options and tasks it names (errors.opt, errors.cmd) travel as parts too."""
        self.emit({"event": "log", "level": level, "message": render(message), "parts": parts(message)})

    def warn(self, message: str) -> None:
        self.log(message, "warning")

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

    def sub(self, start: float, end: float) -> Progress:
        span = self._end - self._start
        return Progress(self._sink, self.cancel_event,
                        self._start + span * start / 100.0, self._start + span * end / 100.0)

    def steps(self, items: Iterable[T], total: int, message: str) -> Iterator[T]:
        """Yield items, reporting `message i/total` with an ETA and checking for cancel before each."""
        t0 = time.monotonic()
        self.update(0, f"{message} 0/{total}")
        for i, item in enumerate(items):
            self.check_cancelled()
            yield item
            done = i + 1
            elapsed = time.monotonic() - t0
            eta = elapsed / done * (total - done) if total else 0.0
            self.update(100.0 * done / max(total, 1), f"{message} {done}/{total}, ETA {format_seconds(eta)}")


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class TerminalSink:
    """Draws a one-line progress bar and log lines on stderr (the CLI's sink)."""

    def __init__(self, stream=None, quiet: bool = False, words: Optional[Words] = None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.words = words
        self._bar_shown = False

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress" and not self.quiet:
            pct = event["percent"]
            filled = int(pct / 100 * 30)
            line = f"\r[{'#' * filled}{'.' * (30 - filled)}] {pct:5.1f}% {event.get('message', '')}"
            self.stream.write(line[:120].ljust(120))
            self._bar_shown = True
        elif kind == "log":
            if self.quiet and event.get("level") == "info":
                return
            if self._bar_shown:
                self.stream.write("\n")
                self._bar_shown = False
            text = join(event["parts"], self.words) if event.get("parts") else event["message"]
            self.stream.write(f"{event.get('level', 'info')}: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()


def quiet_library_warnings() -> None:
    """Hide deprecation chatter that libraries print on import; it means nothing to a user."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\..*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
