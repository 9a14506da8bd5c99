"""One job as JSON on stdin, JSON-lines events on stdout.

Protocol (the only way the QGIS plugin reaches the backend):
- stdin, first line: {"task": NAME, "config": {...}, "cancel_on_eof": bool}; later lines: "cancel"
  (or {"cancel": true}). With "cancel_on_eof" (the plugin sets it), the end of stdin also cancels,
  so a worker whose parent died stops instead of running on.
- stdout, one JSON object per line:
  {"event": "progress", "percent": 0-100, "message": str}
  {"event": "log", "level": "debug|info|warning|error", "message": str}
  {"event": "result", "outputs": {...}, "figures": {...}, ...}   last, on success
  {"event": "error", "type": str, "message": str, "hint": str|null, "option": str|null,
   "message_parts": [...], "hint_parts": [...]|null}                   last, on failure
  message and hint are in the command line's words; the parts (`errors.parts`) let the plugin name the
  options and tasks they mention in its own words (a parameter's label, an algorithm's name);
  "option" is the Config field the error is about, when it is about one.
Exit status: 0 result, 1 error, 2 cancelled. Anything printed by libraries goes to stderr,
so stdout carries events only.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from typing import IO, Callable, Optional

from .allocator import keep_freed_memory
from .config import build_config
from .errors import Cancelled, GeoLinkError, InputError, as_geolink_error, opt, parts, render
from .progress import Progress, quiet_library_warnings
from .tasks import load_task

EXIT_OK, EXIT_ERROR, EXIT_CANCELLED = 0, 1, 2


class EventWriter:
    """Writes events as JSON lines, one at a time across threads."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        line = json.dumps(event, default=str, ensure_ascii=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def _watch_stdin(stream: IO[str], cancel: threading.Event, cancel_on_eof: bool) -> None:
    for line in stream:
        text = line.strip()
        if text == "cancel" or (text.startswith("{") and json.loads(text).get("cancel")):
            cancel.set()
            return
    if cancel_on_eof:
        cancel.set()


def _events_stream() -> IO[str]:
    """Keep a private copy of stdout for events and point fd 1 at stderr."""
    fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1)


def parse_job(job_line: str) -> dict:
    try:
        job = json.loads(job_line)
    except json.JSONDecodeError as exc:
        raise InputError(f"The job is not valid JSON: {exc}") from None
    if not isinstance(job, dict) or "task" not in job:
        raise InputError('The job must be a JSON object with a "task".')
    return job


def error_event(kind: str, message: str, hint: Optional[str] = None, option: Optional[str] = None) -> dict:
    """The last event of a failed job: the texts in the CLI's words, and as parts for the plugin's words."""
    return {"event": "error", "type": kind, "message": render(message), "hint": render(hint), "option": option,
            "message_parts": parts(message), "hint_parts": parts(hint)}


def run_job(job: dict, emit: Callable[[dict], None], cancel: threading.Event) -> int:
    progress = Progress(emit, cancel)
    try:
        module = load_task(job["task"])
        config = build_config(module.Config, job.get("config") or {})
        result = module.run(config, progress)
        emit({"event": "result", **(result or {})})
        return EXIT_OK
    except Cancelled as exc:
        emit(error_event("Cancelled", exc.message))
        return EXIT_CANCELLED
    except (GeoLinkError, OSError) as exc:
        error = exc if isinstance(exc, GeoLinkError) else as_geolink_error(exc)
        if error is None:
            return _crash(exc, emit)
        emit(error_event(type(error).__name__, error.message, error.hint, error.option))
        return EXIT_ERROR
    except MemoryError:
        emit(error_event("MemoryError", "The backend ran out of memory.",
                         f"Use a smaller {opt('batch_size')} or {opt('tile_size')}, or a smaller "
                         f"{opt('extent')}."))
        return EXIT_ERROR
    except Exception as exc:  # a bug: report it with its traceback, never hang
        return _crash(exc, emit)


def _crash(exc: BaseException, emit: Callable[[dict], None]) -> int:
    emit({"event": "log", "level": "error", "message": traceback.format_exc()})
    emit(error_event(type(exc).__name__, f"Internal error: {exc}", "Please report this with the log above."))
    return EXIT_ERROR


def main(stdin: Optional[IO[str]] = None) -> int:
    stdin = stdin or sys.stdin
    emit = EventWriter(_events_stream())
    quiet_library_warnings()
    keep_freed_memory()
    cancel = threading.Event()
    try:
        job = parse_job(stdin.readline())
    except InputError as exc:
        emit(error_event("InputError", exc.message, exc.hint))
        return EXIT_ERROR
    watch = threading.Thread(target=_watch_stdin, args=(stdin, cancel, bool(job.get("cancel_on_eof"))), daemon=True)
    watch.start()
    return run_job(job, emit, cancel)


if __name__ == "__main__":
    sys.exit(main())
