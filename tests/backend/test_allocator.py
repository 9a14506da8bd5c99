"""glibc's allocator kept from returning freed memory: a freed 64 MB buffer is reused without page faults."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parents[2] / "backend"

SCRIPT = """
import resource, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "kept":
    from geolink.allocator import keep_freed_memory
    assert keep_freed_memory()
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(8 * 2**20)  # 64 MB, freed at once
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[1:]))
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(BACKEND), mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="glibc only; a no-op elsewhere")
def test_freed_memory_is_reused_without_page_faults():
    default, kept = page_faults("default"), page_faults("kept")
    assert default > 100  # mapped afresh each time (in 2 MiB pages where numpy gets transparent huge pages)
    assert kept < default / 20


def test_a_no_op_where_it_cannot_apply(monkeypatch):
    from geolink import allocator

    monkeypatch.setattr(allocator.sys, "platform", "win32")
    assert allocator.keep_freed_memory() is False
