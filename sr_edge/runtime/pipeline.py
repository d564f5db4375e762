"""Stages that overlap: an iterator run on its own thread, a bounded queue ahead of its consumer.

Decoding, inference and encoding each release the GIL for their heavy work (FFmpeg,
ONNX Runtime / OpenVINO, zlib), so chaining them through :class:`Prefetch` lets the
slowest stage set the pace instead of the sum of all three. The bounded queue keeps
memory fixed: a stage that runs ahead waits. An exception in a stage is raised in the
consumer; closing the consumer (or an interrupt in the main thread) stops the stage.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()
_POLL_S = 0.1  # how often a blocked stage looks at its stop flag


class Prefetch(Generic[T]):
    """Iterate ``source`` on a daemon thread, at most ``depth`` items ahead of the consumer.

    ``busy_s``: seconds the thread spent inside ``source`` (producing, not waiting), the
    stage's own cost, to compare with the wall time of the whole pipeline.
    """

    def __init__(self, source: Iterable[T], depth: int = 2, name: str = "stage") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.name = name
        self.busy_s = 0.0
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"sr-edge-{name}", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            it = iter(self._source)
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                finally:
                    self.busy_s += time.perf_counter() - started
                if not self._put(item):
                    break
        except BaseException as e:  # handed to the consumer, which raises it
            self._error = e
        finally:
            close = getattr(self._source, "close", None)
            if self._stop.is_set() and callable(close):
                try:
                    close()
                except Exception:  # a generator stopped mid-way may complain; it is being discarded
                    pass
            if not self._stop.is_set():
                self._put(_END)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    item = _END
                else:
                    continue
            if item is _END:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                raise StopIteration
            return item  # type: ignore[return-value]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the stage and wait (up to ``timeout`` s) for its thread to finish."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
