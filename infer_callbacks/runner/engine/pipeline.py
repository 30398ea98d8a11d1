"""The host pipeline: step calls in a background thread, a bounded queue
between them and the inferencers, and the pace of calls.

The device computes the next call's batches while the host hands the
previous ones to the inferencers. Stopping (an inferencer's error,
``KeyboardInterrupt``) never waits longer than ``shutdown_timeout`` for a
call still running: the thread is a daemon and is abandoned after that.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from typing import Any, Callable, Iterator

__all__ = ["Pacer", "pipelined"]


class Pacer:
    """How many rounds the next call runs.

    The first call runs ``start`` rounds (one unless a previous pass
    learned the pace); later calls as many as fit in about
    ``target_seconds`` and ``target_bytes`` of fetched values (at most
    double the previous call's, at most ``max_rounds``), so a progress bar
    moves on a slow model, large outputs stay in bounded memory and a fast
    model gets long calls. With ``adaptive=False`` every call asks ``max_rounds``
    (several workers must run the same calls).
    """

    def __init__(self, max_rounds: int, *, adaptive: bool = True, target_seconds: float = 0.25,
                 target_bytes: int = 64 << 20, start: int = 1):
        self.max_rounds = max_rounds
        self.adaptive = adaptive
        self.target_seconds = target_seconds
        self.target_bytes = target_bytes
        self.limit = max(1, min(start, max_rounds)) if adaptive else max_rounds

    def observe(self, asked: int, rounds: int, seconds: float, nbytes: int = 0) -> None:
        if self.adaptive and rounds:
            by_time = self.target_seconds / max(seconds / rounds, 1e-9)
            by_bytes = self.target_bytes / max(nbytes / rounds, 1e-9)
            self.limit = int(min(self.max_rounds, 2 * asked, max(1, min(by_time, by_bytes))))


# Step threads still running, for the exit hook: a run abandoned by Ctrl-C
# (an asynchronous one, or one past its shutdown timeout) must not be inside a
# TensorFlow call while the interpreter and TensorFlow shut down.
_LIVE: set = set()
_EXIT_WAIT_SECONDS = 5.0


@atexit.register
def _stop_at_exit() -> None:
    for stop, on_stop, _ in list(_LIVE):
        stop.set()
        if on_stop is not None:
            try:
                on_stop()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
    deadline = time.monotonic() + _EXIT_WAIT_SECONDS
    for _, _, worker in list(_LIVE):
        worker.join(timeout=max(0.0, deadline - time.monotonic()))


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return
        except queue.Full:
            pass


def pipelined(call: Callable[[], tuple[Any, bool]], *, background: bool = True,
              shutdown_timeout: float = 2.0, on_stop: Callable[[], None] | None = None) -> Iterator[Any]:
    """Yield ``call()``'s items until it says it is exhausted.

    ``call()`` returns ``(item, exhausted)``; ``item`` is yielded unless it is
    ``None``. With ``background``, calls run in a daemon thread, at most two
    items ahead. Close the generator to stop early. ``on_stop`` runs first
    when the generator ends, however it ends (e.g. to cancel the input a
    running call waits on).
    """
    if not background:
        try:
            while True:
                item, exhausted = call()
                if item is not None:
                    yield item
                if exhausted:
                    return
        finally:
            if on_stop is not None:
                on_stop()

    results: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce():
        try:
            while not stop.is_set():
                item, exhausted = call()
                if item is not None:
                    _put(results, ("item", item), stop)
                if exhausted:
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            _put(results, ("error", e), stop)
        _put(results, ("end", None), stop)

    worker = threading.Thread(target=produce, name="infer_callbacks-step", daemon=True)
    entry = (stop, on_stop, worker)
    _LIVE.add(entry)
    worker.start()
    try:
        while True:
            kind, payload = results.get()
            if kind == "end":
                return
            if kind == "error":
                raise payload
            yield payload
    finally:
        _LIVE.discard(entry)
        stop.set()
        if on_stop is not None:
            on_stop()
        deadline = time.monotonic() + shutdown_timeout
        while worker.is_alive() and time.monotonic() < deadline:
            try:
                results.get(timeout=0.05)
            except queue.Empty:
                pass
            worker.join(timeout=0.05)
