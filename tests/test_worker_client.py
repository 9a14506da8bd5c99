"""The plugin's worker client against real processes: the real backend, and workers that hang or die."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from geolink_qgis.worker_client import Callbacks, Job, WorkerError, run_job

BACKEND_PY = os.environ.get("GEOLINK_BACKEND_PYTHON", sys.executable)


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the backend interpreter (it ignores `-m geolink.worker`)."""
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


def test_real_backend_progress_log_and_result():
    seen = {"progress": [], "log": []}
    cb = Callbacks(progress=lambda p, m: seen["progress"].append(p), log=lambda lv, m: seen["log"].append(m))
    result = run_job(BACKEND_PY, Job("doctor", {}), cb)
    assert result["event"] == "result" and "GeoLink backend" in result["report"]
    assert seen["progress"][-1] == 100


def test_backend_error_carries_message_and_hint():
    with pytest.raises(WorkerError) as err:
        run_job(BACKEND_PY, Job("no-such-task", {}))
    assert "Unknown task" in err.value.message and "doctor" in err.value.hint


def test_missing_interpreter_is_explained(tmp_path):
    with pytest.raises(WorkerError, match="interpreter was not found"):
        run_job(str(tmp_path / "nope" / "python"), Job("doctor", {}))


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shebang script as a stand-in interpreter")
def test_crashing_worker_is_reported_not_hung(tmp_path):
    python = fake_python(tmp_path, """
        import os, signal, sys
        sys.stdin.readline()
        print('{"event": "progress", "percent": 5, "message": "starting"}', flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as err:
        run_job(python, Job("classify", {}))
    assert err.value.kind == "crash" and "out of memory" in err.value.message
    assert time.monotonic() - t0 < 10


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX shebang script as a stand-in interpreter")
def test_cancel_kills_a_stuck_worker_within_2s_and_removes_partials(tmp_path):
    out = tmp_path / "classes.tif"
    python = fake_python(tmp_path, f"""
        import sys, time
        sys.stdin.readline()
        open({str(tmp_path / "classes.partial-999.tif")!r}, "w").write("half")
        while True:  # ignores "cancel" on stdin, like a worker stuck in a long GPU call
            print('{{"event": "progress", "percent": 1, "message": "busy"}}', flush=True)
            time.sleep(0.05)
    """)
    cancel = threading.Event()
    cb = Callbacks(progress=lambda p, m: cancel.set(), is_cancelled=cancel.is_set)
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as err:
        run_job(python, Job("classify", {}, outputs=[str(out)]), cb)
    assert err.value.kind == "cancelled"
    assert time.monotonic() - t0 < 2.5
    assert list(tmp_path.glob("classes*")) == []
