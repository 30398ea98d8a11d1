"""A Python validation input fed through a TensorFlow queue, one run at a time.

tensorpack's ``QueueInput`` idea, per run: a producer thread iterates the
user's batches and enqueues them into a ``tf.queue.FIFOQueue``; the compiled
step dequeues them itself (``runner/engine/tensorflow/step.py``, ``queued``). The DataFlow's own time
(reading, decoding) then overlaps with everything else, and a batch costs one
eager enqueue instead of a ``tf.data.Dataset.from_generator`` element (about
2 ms a batch in the slow-input benchmark before this module, paid in series
with the DataFlow: 20% of a 10 ms-per-batch input) or a new ``tf.data``
pipeline per run (tens of ms to build and start).

Every run ends with an end marker (``more=False``; twice, so a step that
reads several batches a round also sees it at the next round), so the step
stops by itself; an error in the user's iterator, or a value the queue
refuses, ends the run the same way and is raised again, with the batch it
happened at, by :meth:`Feed.check`. :meth:`Feed.close` cancels a run early
(an inferencer's error, ``KeyboardInterrupt``): a pending enqueue is
cancelled and a waiting dequeue fails, so no thread is left blocked.
"""

from __future__ import annotations

import queue as pyqueue
import threading
from typing import Any, Callable, Iterable

import numpy as np
import tensorflow as tf

__all__ = ["Feed"]


def _empty(spec: tf.TensorSpec) -> np.ndarray:
    """A value of ``spec`` with no rows (the end marker's payload)."""
    shape = [0 if d is None else d for d in spec.shape.as_list()]
    if spec.dtype == tf.string:
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, spec.dtype.as_numpy_dtype)


class Feed:
    """One run of a Python input.

    Args:
        batches: a zero-argument function returning the run's iterable of
            batches (already checked and converted to numpy structures).
        signature: the batches' ``tf.TensorSpec`` structure.
        capacity: batches the queue holds ahead of the consumer.
        description: the input, as error notes name it.
    """

    def __init__(self, batches: Callable[[], Iterable[Any]], signature: Any, *, capacity: int = 8,
                 description: str = "the input"):
        self._signature = signature
        self._specs = tf.nest.flatten(signature)
        self._description = description
        self._queue = tf.queue.FIFOQueue(capacity, [s.dtype for s in self._specs] + [tf.bool])
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._failed_at = 0
        # Two threads: one runs the user's iterator, one enqueues. An enqueue
        # may run the waiting step's continuation in the calling thread; kept
        # apart, that work overlaps with the iterator's own time.
        self._handoff: pyqueue.Queue = pyqueue.Queue(maxsize=capacity)
        for target, name in ((lambda: self._read(batches), "read"), (self._push, "push")):
            threading.Thread(target=target, daemon=True, name=f"infer_callbacks-feed-{name}").start()

    def _hand(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._handoff.put(item, timeout=0.05)
                return True
            except pyqueue.Full:
                pass
        return False

    def _read(self, batches: Callable[[], Iterable[Any]]) -> None:
        produced = 0
        try:
            for batch in batches():
                produced += 1
                if not self._hand(tf.nest.flatten(batch) + [True]):
                    return  # closed early
        except BaseException as e:  # noqa: BLE001 - raised again by check()
            if self._stop.is_set():
                return
            self._fail(e, produced + 1)
        self._hand(None)

    def _fail(self, error: BaseException, batch: int) -> None:
        if self._error is None:
            self._error, self._failed_at = error, batch

    def _push(self) -> None:
        pushed = 0
        try:
            while True:
                try:
                    item = self._handoff.get(timeout=0.05)
                except pyqueue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                if item is None:
                    break
                self._queue.enqueue(item)
                pushed += 1
        except tf.errors.CancelledError:
            return  # closed early
        except BaseException as e:  # noqa: BLE001 - e.g. a value the queue refuses; raised by check()
            self._stop.set()  # the reader stops too
            self._fail(e, pushed + 1)
        try:  # the end: the step stops by itself, then check() raises any error
            for _ in range(2):
                self._queue.enqueue([_empty(s) for s in self._specs] + [False])
        except tf.errors.CancelledError:
            pass

    def source(self, transform=None) -> tf.Tensor:
        """What the step reads: the queue's handle (``transform``, a dataset
        transformation, does not apply: a queued input is never sharded)."""
        return self._queue.queue_ref

    def check(self) -> None:
        """Raise the error the user's iterator raised in this run, if any."""
        if self._error is not None:
            error, self._error = self._error, None
            error.add_note(f"(raised while producing validation batch {self._failed_at} of "
                           f"{self._description})")
            raise error

    def close(self) -> None:
        """End the run: stop the producer, cancel what waits on the queue."""
        self._stop.set()
        self._queue.close(cancel_pending_enqueues=True)
