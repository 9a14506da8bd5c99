"""The worker protocol with the real worker process and real tasks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from geolink.worker import run_job


def run_worker(lines: str) -> tuple:
    proc = subprocess.run([sys.executable, "-m", "geolink.worker"], input=lines, capture_output=True,
                          text=True, timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc.returncode, events


def test_doctor_job_streams_progress_then_result():
    code, events = run_worker(json.dumps({"task": "doctor", "config": {}}) + "\n")
    assert code == 0
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and "progress" in kinds
    percents = [e["percent"] for e in events if e["event"] == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100
    result = events[-1]
    assert "torch" in result["figures"]["versions"]
    assert any(d["device"] == "cpu" for d in result["figures"]["devices"]["devices"])


def test_bad_json_unknown_task_and_bad_option_are_errors_with_hints():
    code, events = run_worker("not json\n")
    assert code == 1 and events[-1]["type"] == "InputError" and "JSON" in events[-1]["message"]
    code, events = run_worker(json.dumps({"task": "no-such-task"}) + "\n")
    assert code == 1 and "Unknown task" in events[-1]["message"] and "doctor" in events[-1]["hint"]
    code, events = run_worker(json.dumps({"task": "doctor", "config": {"bogus": 1}}) + "\n")
    assert code == 1 and "bogus" in events[-1]["message"]


def test_cancel_before_start_reports_cancelled():
    events = []
    cancel = threading.Event()
    cancel.set()
    code = run_job({"task": "doctor", "config": {}}, events.append, cancel)
    assert code == 2
    assert events[-1] == {"event": "error", "type": "Cancelled", "message": "Cancelled by the user.", "hint": None,
                          "option": None, "message_parts": [{"text": "Cancelled by the user."}], "hint_parts": None}


def test_stdout_carries_only_events_even_when_libraries_print():
    code, events = run_worker(json.dumps({"task": "doctor", "config": {}}) + "\n")
    assert code == 0 and all("event" in e for e in events)

