"""Validation that does not stop training: a device-side snapshot of the
weights and one background run at a time.

| who            | owns                                                       |
| -------------- | ---------------------------------------------------------- |
| :class:`Snapshot` | one private copy of the model's weights, on the model's devices; the tower reads it through ``keras.StatelessScope`` |
| :class:`BackgroundRun` | the thread that validates the snapshot; its result or error |
| runner         | when to snapshot, when to wait, where results go           |

The snapshot is taken by one ``tf.function`` of ``assign`` ops (no host
round-trip) while training is paused at an epoch boundary. The validation
reads only the snapshot, so training may update the model's variables
meanwhile. A new snapshot is taken only after the previous run finished: at
most one extra copy of the weights exists.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

__all__ = ["Snapshot", "BackgroundRun", "scoped"]


class Snapshot:
    """A private copy of ``model.weights`` (trainable and not) on the same devices.

    Attributes:
        epoch_num, global_step: what the copy holds (``None`` before :meth:`take`).
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy | None):
        self.sources = list(model.weights)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            self.copies = [tf.Variable(lambda v=v: tf.zeros(v.shape, v.dtype), trainable=False,
                                       name="snapshot") for v in self.sources]
        pairs = list(zip(self.copies, self.sources))

        @tf.function(autograph=False)
        def copy():
            for mine, theirs in pairs:
                mine.assign(theirs.value)

        self._copy = copy
        self.epoch_num: int | None = None
        self.global_step: int | None = None

    def take(self, epoch_num: int, global_step: int) -> None:
        """Copy the model's current weights into the snapshot."""
        self._copy()
        self.epoch_num, self.global_step = int(epoch_num), int(global_step)

    def mapping(self) -> list[tuple[Any, tf.Variable]]:
        """``(model variable, snapshot variable)`` pairs for a ``StatelessScope``."""
        return list(zip(self.sources, self.copies))

    def numpy(self) -> list[np.ndarray]:
        """The snapshot's values, in ``model.weights`` order."""
        return [c.numpy() for c in self.copies]

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(c.shape)) * c.dtype.size for c in self.copies)


def scoped(fn: Callable, snapshot: Snapshot) -> Callable:
    """``fn`` reading the snapshot instead of the model's variables (for any
    Keras code it calls, the default tower and custom towers alike)."""
    def run(*args):
        with keras.StatelessScope(state_mapping=snapshot.mapping()):
            return fn(*args)
    return run


class BackgroundRun:
    """``fn()`` in a daemon thread; :meth:`wait` returns its result or raises its error.

    ``cancel`` asks the run to stop at its next batch (``should_stop`` is
    what ``fn`` polls).
    """

    def __init__(self, fn: Callable[["BackgroundRun"], Any], name: str = "infer_callbacks-async"):
        self._fn = fn
        self._result: Any = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._result = self._fn(self)
        except BaseException as e:  # noqa: BLE001 - handed to wait()
            self._error = e
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def should_stop(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None) -> Any:
        """The result; ``TimeoutError`` if not done within ``timeout`` seconds."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"The background validation did not finish within {timeout} s.")
        if self._error is not None:
            raise self._error
        return self._result


class AsyncDriver:
    """The asynchronous schedule of one runner (``asynchronous=True``).

    At an epoch's end it publishes what finished since the last one (with
    ``runner.epoch_key`` naming the epoch measured) and marks the epoch for
    validation; at the next epoch's start (the weights are still the ones
    that epoch ended with, and the savers have had the previous snapshot)
    it waits for a run still going, snapshots, and starts the next run. The
    last epoch is validated in the foreground, so ``History``'s last row and
    ``EarlyStopping`` see it; ``on_train_end`` waits for what still runs.
    """

    def __init__(self, runner):
        self.runner = runner
        self.run: BackgroundRun | None = None
        self.running_epoch: int | None = None
        self.deferred: tuple[int, int] | None = None
        self.ready: dict[str, float] = {}

    def _collect(self, block: bool) -> dict[str, float]:
        """Results of the run that finished (waiting for it if ``block``)."""
        if self.run is None or (not block and not self.run.done):
            return {}
        run, epoch, self.run = self.run, self.running_epoch, None
        try:
            results = run.wait(self.runner.async_timeout)
        except TimeoutError:
            run.cancel()
            raise TimeoutError(
                f"The asynchronous validation of epoch {epoch} did not finish within "
                f"async_timeout={self.runner.async_timeout} s. Raise async_timeout, or validate "
                "less data.") from None
        except Exception as e:
            e.add_note(f"(raised by the asynchronous validation of epoch {epoch})")
            raise
        self.runner.last_results = results
        return {**results, self.runner.epoch_key: epoch}

    def start(self, epoch_num: int, global_step: int) -> dict[str, float]:
        """Snapshot now and validate in the background; return what the
        previous run (waited for if still going) produced."""
        if self.run is not None and not self.run.done:
            print(f"[infer_callbacks] waiting for the validation of epoch {self.running_epoch} "
                  f"before validating epoch {epoch_num}", flush=True)
        done = self._collect(block=True)
        self.run, self.running_epoch = self.runner._launch(epoch_num, global_step), epoch_num
        return done

    def epoch_begin(self) -> None:
        if self.deferred is not None:
            (epoch_num, step), self.deferred = self.deferred, None
            self.ready.update(self.start(epoch_num, step))

    def epoch_end(self, epoch_num: int, global_step: int, logs: dict | None, last: bool) -> None:
        finished = {**self.ready, **self._collect(block=False)}
        self.ready = {}
        if last:
            self._collect(block=True)  # its report reaches the monitors
            self.runner._launch(epoch_num, global_step, foreground=True)
            self.runner.publish({**self.runner.last_results, self.runner.epoch_key: epoch_num}, logs)
            return
        if finished:
            self.runner.publish(finished, logs)
        self.deferred = (epoch_num, global_step)

    def trigger(self, epoch_num: int, global_step: int) -> dict[str, float]:
        return self.start(epoch_num, global_step)

    def train_end(self) -> None:
        self.deferred = None
        self.ready = {}
        self._collect(block=True)
