"""Atomic outputs: write to a partial file beside the target, rename when complete.

An error or a cancel leaves nothing; a killed worker can leave `<stem>.partial-<pid><suffix>`
files, which the QGIS client (geolink_qgis/worker_client.py) deletes by that name pattern.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, List, Union

PathLike = Union[str, os.PathLike]
PARTIAL_TAG = ".partial-"


def partial_path(target: PathLike) -> Path:
    """The temporary name a target is written under; keeps the suffix so drivers pick the format."""
    target = Path(target)
    return target.with_name(f"{target.stem}{PARTIAL_TAG}{os.getpid()}{target.suffix}")


@contextlib.contextmanager
def atomic_output(target: PathLike, sidecars: bool = True) -> Iterator[Path]:
    """Yield a temporary path; on success move it (and GDAL sidecars such as .aux.xml) onto `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(target)
    try:
        yield tmp
        if sidecars:
            for side in _sidecars(tmp):
                os.replace(side, target.with_name(target.name + side.name[len(tmp.name):]))
        os.replace(tmp, target)
    finally:
        for leftover in [tmp, *_sidecars(tmp)]:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _sidecars(tmp: Path) -> List[Path]:
    return [p for p in tmp.parent.glob(tmp.name + ".*") if p != tmp]

