"""Run one backend job in a worker process and turn its events into callbacks.

Pure Python (no qgis import) so it can be tested alone and used from any thread:
Processing algorithms run in a background task. The worker is a separate process,
so a crash, an out-of-memory kill or a hung GPU never takes QGIS down.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Protocol

CANCEL_GRACE_S = 1.5
PARTIAL_TAG = ".partial-"  # the backend names unfinished outputs <stem>.partial-<pid>-<n><suffix> (geolink.atomic)


class WorkerError(RuntimeError):
    """The backend reported an error, died, or was cancelled."""

    def __init__(self, message: str, hint: Optional[str] = None, kind: str = "error"):
        super().__init__(message)
        self.message, self.hint, self.kind = message, hint, kind

    def __str__(self) -> str:
        return self.message + (f"\n{self.hint}" if self.hint else "")


class Words(Protocol):
    """How a front end names the options and tasks that backend messages mention (see geolink.errors)."""

    def option(self, key: str, value: Optional[str]) -> str: ...

    def command(self, name: str) -> str: ...


def join_parts(parts: Optional[List[dict]], words: Words) -> str:
    """A backend text sent as parts (plain text, {"option": key[, "value"]}, {"command": task}) in `words`."""
    return "".join(p["text"] if "text" in p else words.command(p["command"]) if "command" in p
                   else words.option(p["option"], p.get("value")) for p in parts or [])


@dataclass
class Callbacks:
    progress: Callable[[float, str], None] = lambda pct, msg: None
    log: Callable[[str, str], None] = lambda level, msg: None
    is_cancelled: Callable[[], bool] = lambda: False
    words: Optional[Words] = None  # the front end's names for options and tasks; None: the backend's (CLI) words


def _text(event: dict, key: str, parts_key: str, words: Optional[Words]) -> Optional[str]:
    """An event's text in the front end's words when the backend sent it as parts, else as sent."""
    parts = event.get(parts_key)
    return join_parts(parts, words) if words is not None and parts else event.get(key)


@dataclass
class Job:
    task: str
    config: dict
    outputs: List[str] = field(default_factory=list)  # files to clean up after a cancel or crash
    env: Dict[str, str] = field(default_factory=dict)  # extra environment for the worker (e.g. GEOLINK_MODEL_DIRS)


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ, **(extra or {}))
    # QGIS sets these for its own Python; the backend venv must find its own stdlib and packages.
    for key in ("PYTHONHOME", "PYTHONPATH"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _remove_partials(outputs: Iterable[str]) -> None:
    for out in outputs:
        target = Path(out)
        if target.parent.is_dir():
            for leftover in target.parent.glob(f"{target.stem}{PARTIAL_TAG}*"):
                try:
                    leftover.unlink()
                except OSError:
                    pass


def _pump(stream, sink: queue.Queue, tag: str) -> None:
    for line in iter(stream.readline, ""):
        sink.put((tag, line))
    sink.put((tag, None))


def run_job(python: str, job: Job, callbacks: Optional[Callbacks] = None, timeout_s: Optional[float] = None) -> dict:
    """Run `job` with the backend interpreter `python`; return the result event or raise WorkerError."""
    cb = callbacks or Callbacks()
    if not python or not Path(python).exists():
        raise WorkerError(f"The GeoLink backend interpreter was not found: {python or '(not set)'}",
                          hint="Install the backend from the GeoLink settings, or set GEOLINK_BACKEND_PYTHON.")
    creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        proc = subprocess.Popen([python, "-m", "geolink.worker"],  # nosec B603  backend interpreter, fixed argv
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                env=child_env(job.env), creationflags=creationflags)
    except OSError as exc:
        raise WorkerError(f"Could not start the GeoLink backend ({python}): {exc}",
                          hint="Reinstall the backend from the GeoLink settings.") from None
    events: queue.Queue = queue.Queue()
    for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=_pump, args=(stream, events, tag), daemon=True).start()
    proc.stdin.write(json.dumps({"task": job.task, "config": job.config, "cancel_on_eof": True}) + "\n")
    proc.stdin.flush()

    final: Optional[dict] = None
    stderr_tail: List[str] = []
    open_streams = 2
    started = time.monotonic()
    cancelled = False
    try:
        while open_streams:
            if cb.is_cancelled() and not cancelled:
                cancelled = True
                _stop(proc)
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                _stop(proc)
                raise WorkerError(f"The backend did not finish within {timeout_s:.0f} s and was stopped.")
            try:
                tag, line = events.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
                continue
            if tag == "err":
                stderr_tail = (stderr_tail + [line.rstrip()])[-30:]
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                cb.log("info", line.rstrip())
                continue
            kind = event.get("event")
            if kind == "progress":
                cb.progress(float(event.get("percent", 0)), event.get("message", ""))
            elif kind == "log":
                cb.log(event.get("level", "info"), _text(event, "message", "parts", cb.words) or "")
            elif kind in ("result", "error"):
                final = event
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    if cancelled or (final and final.get("type") == "Cancelled"):
        _remove_partials(job.outputs)
        raise WorkerError("Cancelled.", kind="cancelled")
    if final and final.get("event") == "result":
        return final
    _remove_partials(job.outputs)
    if final:
        raise WorkerError(_text(final, "message", "message_parts", cb.words) or "The backend failed.",
                          hint=_text(final, "hint", "hint_parts", cb.words), kind=final.get("type", "error"))
    raise WorkerError(_death_message(code), hint="\n".join(stderr_tail[-10:]) or None, kind="crash")


def _stop(proc: subprocess.Popen) -> None:
    """Ask the worker to cancel, then kill it if it has not stopped within the grace time."""
    try:
        proc.stdin.write("cancel\n")
        proc.stdin.flush()
    except (OSError, ValueError):
        pass
    wait_or_kill(proc, CANCEL_GRACE_S)


def wait_or_kill(proc: subprocess.Popen, seconds: float) -> None:
    """Give a child `seconds` to end, then kill it."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _death_message(code: Optional[int]) -> str:
    if code is not None and code in (-9, 137, -6, 134):
        return (f"The GeoLink backend was killed (exit code {code}), most likely because the computer ran out of "
                "memory. Try a smaller tile or batch size, or a smaller extent.")
    return f"The GeoLink backend stopped unexpectedly (exit code {code}) without reporting a result."
