"""Reading and writing overlapped with the model: the next items prepared in a thread of their own (Ahead), calls
on the results run in a writer thread (Behind), each through a bounded queue so memory stays bounded.

Order is kept. An exception in either thread is raised in the caller's thread as it was raised (same type,
same message), at the next item or call, or on leaving the block. Leaving the block, normally or on an
error or a cancel, stops and joins the thread first, so nothing it uses (a GDAL dataset) is used after the
caller closes it; the wait is at most the item or call the thread is in. torch and GDAL release the GIL
while they work, so the threads overlap the model even in CPython.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
_END = object()
POLL = 0.05  # seconds between checks for a stop while the queue is full


class Ahead(Generic[T]):
    """Iterates `items` in a thread of its own, at most `depth` items ready ahead of the consumer (plus the one
    being made). Use as `with Ahead(items) as ready: for item in ready: ...`."""

    def __init__(self, items: Iterable[T], depth: int = 1, name: str = "geolink-read"):
        self._items = items
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def __enter__(self) -> Ahead[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def __iter__(self) -> Iterator[T]:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    def _produce(self) -> None:
        items = iter(self._items)
        try:
            for item in items:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_END, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=POLL)
                return True
            except queue.Full:
                pass
        return False


class Behind:
    """Calls run in a writer thread, in order, at most `depth` queued behind the caller's (plus the one
    running). Use as `with Behind(depth) as later: later(fn, *args)`; leaving the block normally waits for the
    last call. After a failed call the rest are dropped and its error is raised at the caller's next call or on
    leaving; leaving on an error drops the calls still queued."""

    def __init__(self, depth: int = 1, name: str = "geolink-write"):
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: Optional[BaseException] = None
        self._drop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Behind:
        self._thread.start()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self._drop = kind is not None
        self._queue.put(_END)  # the writer always drains the queue, so this returns
        self._thread.join()
        if kind is None:
            self._raise()

    def __call__(self, fn: Callable[..., None], *args) -> None:
        self._raise()
        self._queue.put((fn, args))

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            call = self._queue.get()
            if call is _END:
                return
            if self._error is None and not self._drop:
                try:
                    call[0](*call[1])
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc
