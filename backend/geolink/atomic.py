"""Atomic outputs: a task's files are written under temporary names beside their targets and put in place
together, once every writer has closed its file and checked it, so an output is whole or absent.

A target `o.tif` is written as `o.partial-<pid>-<n>-<host>.tif`; anything written beside it under that stem
(GDAL's `.aux.xml`, a `.qml` style, a GeoPackage journal) belongs to it and is renamed with it. Replacing
an existing target also removes the sidecars the new set does not bring (an old `o.qml` must not style a
new `o.tif`). Partial files of processes no longer alive (a killed CLI or worker) are removed by the next
set written into that folder; the QGIS client (geolink_qgis/worker_client.py) removes those of a worker it
stopped by the same name pattern.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from .errors import InputError, OutputError, opt

PathLike = Union[str, os.PathLike]
PARTIAL_TAG = ".partial-"
# <stem>.partial-<pid>-<n>-<host><suffix>: the host (a hash of its name) keeps a run from deleting the partial
# files of a live process on another machine writing into the same shared folder (a cluster's batch)
PARTIAL_RE = re.compile(r"\.partial-(\d+)(?:-\d+)?(?:-([0-9a-f]{6}))?(?=\.|$)")
HOST = hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()  # a name tag, not security
# Files that belong to an output `o.tif`: `o.tif<suffix>` and `o<suffix>`; removed when `o.tif` is replaced
# by a set that does not bring them.
SIDECARS_OF_NAME = (".aux.xml", ".ovr", ".msk", "-journal", "-wal", "-shm")
SIDECARS_OF_STEM = (".qml", ".qmd", ".aux.xml")
LOCK_WAIT_S = 30.0
_counter = itertools.count()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (any user's), on POSIX and on Windows."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # access denied: it exists, someone else's
        code = ctypes.c_ulong()
        try:
            return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: PathLike) -> List[str]:
    """Delete the partial files in `folder` whose writing process is gone; returns their names."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = PARTIAL_RE.search(entry.name)
            if match and entry.is_file(follow_symlinks=False) and match.group(2) in (None, HOST) \
                    and not pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def partial_path(target: PathLike, token: Optional[str] = None) -> Path:
    """A temporary name for `target` (token: its writer's <pid>-<n>-<host>, a new one by default); it keeps
    the suffix so that drivers pick the format."""
    target = Path(target)
    token = token or f"{os.getpid()}-{next(_counter)}-{HOST}"
    return target.with_name(f"{target.stem}{PARTIAL_TAG}{token}{target.suffix}")


def same_file(a: PathLike, b: PathLike) -> bool:
    """Same path once resolved, or the same file by inode (hard links, other spellings of a path)."""
    pa, pb = Path(a), Path(b)
    if os.path.normcase(os.path.abspath(pa)) == os.path.normcase(os.path.abspath(pb)):
        return True
    with contextlib.suppress(OSError, ValueError):
        if pa.resolve() == pb.resolve():
            return True
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)
    return False


def refuse_overwriting_inputs(outputs: Dict[str, PathLike], inputs: Dict[str, Sequence[PathLike]]) -> None:
    """Raise InputError when an output is, or would replace, one of the inputs or another output.
    `outputs`/`inputs` map an option's name to its path(s); the error names the output's option."""
    seen: Dict[str, str] = {}
    for name, out in outputs.items():
        for in_name, paths in inputs.items():
            for path in paths:
                if path and not str(path).startswith("/vsi") and same_file(out, path):
                    raise InputError(f"The output {out} is the input given as {opt(in_name)}: writing it would "
                                     "destroy the input.", hint=f"Choose another file for {opt(name)}.",
                                     option=name)
        for other, path in seen.items():
            if same_file(out, path):
                raise InputError(f"{opt(name)} and {opt(other)} name the same file {out}.",
                                 hint=f"Give {opt(name)} a file of its own.", option=name)
        seen[name] = str(out)


def refuse_unwritable(target: PathLike, option: Optional[str] = None) -> None:
    """Refuse, before any work, an output whose folder (or the nearest existing one above it) cannot be written."""
    folder = Path(target).absolute().parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        error = explain_write_error(OSError(errno.EROFS, "Read-only file system"), Path(folder) / Path(target).name)
        error.option = option
        raise error


def free_bytes(folder: PathLike) -> Optional[int]:
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder).free
    return None


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000.0
    return f"{n:,.1f} TB"


def final_name(path: PathLike) -> str:
    """The name a partial file will have once put in place (o.partial-12-0.tif -> o.tif)."""
    return PARTIAL_RE.sub("", Path(path).name)


def explain_write_error(exc: BaseException, target: PathLike) -> Optional[OutputError]:
    """A plain OutputError for a failure to write `target` (disk full, read-only, no permission), else None.
    GDAL reports these as RuntimeError with the C library's words, Python as OSError."""
    target = Path(target).with_name(final_name(target))
    code = getattr(exc, "errno", None)
    text = str(exc)
    folder = target.parent.absolute()
    if code == errno.ENOSPC or any(words in text for words in ("No space left", "Disk full", "disk is full")):
        free = free_bytes(folder)
        return OutputError(f"The disk holding {folder} is full ({human_bytes(free or 0)} free): {target.name} "
                           "could not be written, and nothing was left behind.",
                           hint="Free some space, or choose an output folder on another disk.")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or any(
            words in text for words in ("Read-only file system", "Permission denied", "readonly database")):
        return OutputError(f"Cannot write {target.name}: the folder {folder} is read-only or write-protected.",
                           hint="Choose an output folder you can write to.")
    return None


class OutputSet:
    """The files one task writes, put in place together. Use as a context manager:

        with OutputSet({"out": path, "probabilities": other}, progress) as outputs:
            write(outputs.partial(path))                 # writers close and check their files here
            write_qml(outputs.sidecar(path, ".qml"))
        # on leaving without an error: every file renamed onto its target; on an error: all deleted

    `targets` maps option names to paths (None: not asked for). Opening it refuses a target that is one of
    `inputs` ({option: paths}), checks that the folders can be written and removes dead processes'
    partial files there.
    """

    def __init__(self, targets: Union[Dict[str, PathLike], Sequence[PathLike]],
                 log: Optional[Callable[[str], None]] = None, inputs: Optional[Dict[str, Sequence[PathLike]]] = None):
        named = targets if isinstance(targets, dict) else {str(i): t for i, t in enumerate(targets)}
        named = {name: t for name, t in named.items() if t}
        refuse_overwriting_inputs(named, inputs or {})
        self.options = {Path(t): name for name, t in named.items() if t}
        self.targets = list(self.options)
        self.log = log or (lambda message: None)
        self._tokens = {t: f"{os.getpid()}-{next(_counter)}-{HOST}" for t in self.targets}
        self.replaced: List[str] = []
        for folder in dict.fromkeys(t.parent for t in self.targets):
            self._check_folder(folder)
            removed = remove_stale_partials(folder)
            if removed:
                self.log(f"Removed {len(removed)} partial file(s) left in {folder} by a stopped run: "
                         + ", ".join(removed[:5]) + (" ..." if len(removed) > 5 else ""))

    def _check_folder(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".geolink{PARTIAL_TAG}{os.getpid()}-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            target = next(t for t in self.targets if t.parent == folder)
            raise self._error(exc, target) from None

    def _error(self, exc: BaseException, target: Path) -> OutputError:
        error = explain_write_error(exc, target) or OutputError(
            f"Cannot write {target}: {exc}", hint="Choose another output file or folder.")
        error.option = error.option or self.options.get(target)
        return error

    def _prefix(self, target: Path) -> str:
        return f"{target.stem}{PARTIAL_TAG}{self._tokens[target]}"

    def partial(self, target: PathLike) -> Path:
        """The temporary name `target` is written under in this set."""
        return partial_path(target, self._tokens[Path(target)])

    def sidecar(self, target: PathLike, suffix: str) -> Path:
        """The temporary name of the file `target`'s stem + `suffix` (e.g. ".qml"), renamed with the set."""
        target = Path(target)
        return target.with_name(self._prefix(target) + suffix)

    def require_space(self, nbytes: float, what: str = "the outputs") -> None:
        """Refuse before writing when the outputs' volume has less free space than `nbytes`."""
        folder = self.targets[0].parent.absolute()
        free = free_bytes(folder)
        if free is not None and nbytes > free:
            raise OutputError(f"{what[0].upper() + what[1:]} need about {human_bytes(nbytes)} but the disk holding "
                              f"{folder} has {human_bytes(free)} free.",
                              hint="Free some space, choose an output folder on another disk, or process a smaller "
                                   "extent or at a coarser ground sample distance.",
                              option=self.options.get(self.targets[0]))

    def _written(self, target: Path) -> Dict[Path, Path]:
        """{temporary file: final name} of everything written for `target`."""
        prefix = self._prefix(target)
        files = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir(target.parent):
                if entry.name.startswith(prefix + ".") or entry.name == prefix:
                    files[Path(entry.path)] = target.with_name(target.stem + entry.name[len(prefix):])
        return files

    def _stale(self, target: Path, keep: Iterable[Path]) -> List[Path]:
        keep = set(keep)
        names = [target.name + s for s in SIDECARS_OF_NAME] + [target.stem + s for s in SIDECARS_OF_STEM]
        return [p for p in (target.with_name(n) for n in dict.fromkeys(names)) if p not in keep and p.exists()]

    def commit(self) -> None:
        written = {t: self._written(t) for t in self.targets}
        for target, files in written.items():
            if self.partial(target) not in files:
                raise OutputError(f"{target.name} was not written.", option=self.options.get(target))
        with _folder_lock(self.targets[0].parent):
            for target, files in written.items():
                stale = self._stale(target, files.values())
                if target.exists():
                    self.replaced.append(str(target))
                    extra = [p.name for p in stale]
                    self.log(f"Replaced the existing {target}" + (f" and removed its old {', '.join(extra)}"
                                                                  if extra else "") + ".")
                try:
                    for path in stale:
                        path.unlink()
                    for tmp, final in sorted(files.items(), key=lambda kv: kv[0] == self.partial(target)):
                        os.replace(tmp, final)  # the output itself last, so its sidecars are there when it is
                except OSError as exc:
                    raise self._error(exc, target) from None

    def discard(self) -> None:
        for target in self.targets:
            for tmp in self._written(target):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            if exc is None:
                self.commit()
                return False
        finally:
            self.discard()
        if isinstance(exc, (OSError, RuntimeError)):
            problem = next((self._error(exc, t) for t in self.targets if explain_write_error(exc, t)), None)
            if problem is not None:
                raise problem from None
        return False


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Serialise the renames of concurrent runs into one folder, so two sets to one path never mix."""
    lock = folder / ".geolink-commit.lock"
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            with contextlib.suppress(OSError, ValueError):
                owner = lock.read_text()
                if (owner and not pid_alive(int(owner))) or (not owner and time.time() - lock.stat().st_mtime > 10):
                    lock.unlink()
                    continue
            if time.monotonic() > deadline:
                raise OutputError(f"Another run is still writing into {folder} (lock {lock.name}).",
                                  hint=f"Wait for it, or delete {lock} if no run is going on.") from None
            time.sleep(0.05)
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


@contextlib.contextmanager
def atomic_output(target: PathLike, log: Optional[Callable[[str], None]] = None) -> Iterator[Path]:
    """One file (and anything written beside it under its temporary stem) as an OutputSet: yields the
    temporary path; renamed onto `target` when the block ends without an error, else deleted."""
    with OutputSet([target], log) as outputs:
        yield outputs.partial(target)
