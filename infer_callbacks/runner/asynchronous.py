"""Validation that does not stop training: a device-side snapshot of the
weights and one background run at a time.

| who            | owns                                                       |
| -------------- | ---------------------------------------------------------- |
| the engine's ``Snapshot`` (``engine/tensorflow/snapshot.py``, ``engine/jax/snapshot.py``) | one private copy of the model's weights, on the model's devices; the tower reads it through ``keras.StatelessScope`` |
| :class:`BackgroundRun` | the thread that validates the snapshot; its result or error |
| :class:`AsyncDriver` | when to snapshot, when to wait; it is handed the runner's launch, foreground pass and publish |
| runner         | where results go                                           |
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

__all__ = ["AsyncDriver", "BackgroundRun"]

logger = logging.getLogger(__name__)


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
    ``epoch_key`` naming the epoch measured) and marks the epoch for
    validation; at the next epoch's start (the weights are still the ones
    that epoch ended with, and the savers have had the previous snapshot)
    it waits for a run still going, snapshots, and starts the next run. The
    last epoch is validated in the foreground, so ``History``'s last row and
    ``EarlyStopping`` see it; ``on_train_end`` waits for what still runs.
    """

    def __init__(self, *, launch: Callable[[int, int], BackgroundRun],
                 foreground: Callable[[int, int], dict], publish: Callable[[dict, Any], None],
                 set_last: Callable[[dict], None], timeout: float, epoch_key: str):
        """
        Args:
            launch: ``launch(epoch_num, global_step)`` snapshots and starts a
                :class:`BackgroundRun` whose result is the results dict.
            foreground: ``foreground(epoch_num, global_step)`` validates the
                current weights now and returns the results.
            publish: ``publish(results, logs)`` puts results into ``logs``.
            set_last: receives the results of each finished run.
            timeout: the most seconds to wait for a background run.
            epoch_key: the key naming the epoch a published result measures.
        """
        self._launch, self._foreground, self._publish = launch, foreground, publish
        self._set_last, self.timeout, self.epoch_key = set_last, float(timeout), epoch_key
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
            results = run.wait(self.timeout)
        except TimeoutError:
            run.cancel()
            raise TimeoutError(
                f"The asynchronous validation of epoch {epoch} did not finish within "
                f"async_timeout={self.timeout} s. Raise async_timeout, or validate "
                "less data.") from None
        except Exception as e:
            e.add_note(f"(raised by the asynchronous validation of epoch {epoch})")
            raise
        self._set_last(results)
        return {**results, self.epoch_key: epoch}

    def start(self, epoch_num: int, global_step: int) -> dict[str, float]:
        """Snapshot now and validate in the background; return what the
        previous run (waited for if still going) produced."""
        if self.run is not None and not self.run.done:
            logger.warning("waiting for the validation of epoch %d before validating epoch %d",
                           self.running_epoch, epoch_num)
        done = self._collect(block=True)
        self.run, self.running_epoch = self._launch(epoch_num, global_step), epoch_num
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
            results = self._foreground(epoch_num, global_step)
            self._publish({**results, self.epoch_key: epoch_num}, logs)
            return
        if finished:
            self._publish(finished, logs)
        self.deferred = (epoch_num, global_step)

    def trigger(self, epoch_num: int, global_step: int) -> dict[str, float]:
        return self.start(epoch_num, global_step)

    def train_end(self) -> None:
        self.deferred = None
        self.ready = {}
        self._collect(block=True)
