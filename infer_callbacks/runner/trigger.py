"""``PeriodicTrigger``: run any callback every k epochs and/or every k steps."""

from __future__ import annotations

import inspect

import keras

from infer_callbacks._chief import ChiefOnly
from infer_callbacks._copying import copy_callback

__all__ = ["PeriodicTrigger"]


def _is_runner(callback) -> bool:
    return callable(getattr(callback, "trigger", None)) and callable(getattr(callback, "pop_reports", None))


def _trigger_takes_logs(callback) -> bool | None:
    """How to call ``callback.trigger``: ``True`` with the logs, ``False``
    with nothing (tensorpack's ``def trigger(self)``), ``None`` when there is
    no ``trigger`` (the callback gets ``on_epoch_end`` instead)."""
    trigger = getattr(callback, "trigger", None)
    if not callable(trigger) or _is_runner(callback):
        return None
    try:
        params = list(inspect.signature(trigger).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): pass the logs
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_logs = bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in params)
    required = [p.name for p in positional[1 if takes_logs else 0:] if p.default is p.empty]
    required += [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if required:
        raise TypeError(f"PeriodicTrigger calls `{type(callback).__name__}.trigger()` with no arguments or "
                        f"with one (the logs), but its signature is trigger{inspect.signature(trigger)}: "
                        f"give {', '.join(required)} a default.")
    return takes_logs


class PeriodicTrigger(ChiefOnly, keras.callbacks.Callback):
    """Runs a callback periodically instead of at the end of every epoch.

    The wrapped callback gets ``set_model``, ``set_params``,
    ``on_train_begin`` and ``on_train_end`` as usual. At its schedule:

    * an :class:`InferenceRunner` validates (results go into that epoch's
      ``logs``; a run after a training step goes into that batch's ``logs``
      and the next epoch's);
    * any other callback (``MaxSaver``, ``ModelCheckpoint``, your own) gets
      ``trigger(logs)`` if it has one (``trigger()`` if it takes no
      argument, as tensorpack's callbacks do), else
      ``on_epoch_end(epoch, logs)``, with the latest epoch's logs and any
      newer validation results.

    Args:
        callback: the callback to run (tensorpack's ``triggerable``).
        every_k_epochs: run after every k-th epoch.
        every_k_steps: run after every k-th global step: it reads
            ``optimizer.iterations`` after each training call, so with
            ``compile(steps_per_execution=n)`` it still fires whenever a
            multiple of k was reached (once per call that crosses one).
        before_train: also run once before the first training step.

    Example:

    ```python
    PeriodicTrigger(InferenceRunner(val_ds, ScalarStats("loss")), every_k_epochs=5)
    ```
    """

    def __init__(self, callback: keras.callbacks.Callback, every_k_epochs: int | None = None,
                 every_k_steps: int | None = None, before_train: bool = False):
        super().__init__()
        for name, value in (("every_k_epochs", every_k_epochs), ("every_k_steps", every_k_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")
        if every_k_epochs is None and every_k_steps is None and not before_train:
            raise ValueError("PeriodicTrigger needs a period: pass every_k_epochs=, every_k_steps= "
                             "or before_train=True.")
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError("`callback` must be a keras.callbacks.Callback (an InferenceRunner, a saver, "
                            f"...). Received: {callback!r}")
        self.callback = callback
        self.chief_only = getattr(callback, "chief_only", True)  # tensorpack's ProxyCallback
        self._takes_logs = _trigger_takes_logs(callback)  # the signature, read once
        self.every_k_epochs = every_k_epochs
        self.every_k_steps = every_k_steps
        self.before_train = before_train
        self._last_step = 0
        self._epoch = 0
        self._pending: dict[str, float] = {}
        self._latest: dict = {}

    def __deepcopy__(self, memo: dict) -> "PeriodicTrigger":
        """A copy of the schedule and of the wrapped callback, with no run
        state (keras-tuner copies callbacks for every trial)."""
        return copy_callback(self, memo, fresh={
            "_last_step": int, "_epoch": int, "_pending": dict, "_latest": dict})

    @property
    def runner(self):
        """The wrapped callback (tensorpack code calls it ``runner`` too)."""
        return self.callback

    def set_model(self, model) -> None:
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params) -> None:
        super().set_params(params)
        self.callback.set_params(params)

    def _iterations(self) -> int:
        iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
        return int(iterations.numpy()) if iterations is not None else 0

    def _fire(self, epoch: int, logs: dict | None, at_epoch_end: bool) -> None:
        if _is_runner(self.callback):
            results = self.callback.trigger(epoch_num=epoch if at_epoch_end else self._epoch,
                                            global_step=self._iterations())
            self._pending = dict(results)
            if logs is not None and not at_epoch_end:
                logs.update(results)
            return
        merged = {**self._latest, **self._pending, **(logs or {})}
        if self._takes_logs:
            self.callback.trigger(merged)
        elif self._takes_logs is False:
            self.callback.trigger()
        else:
            self.callback.on_epoch_end(max(epoch - 1, 0), merged)

    def on_train_begin(self, logs=None) -> None:
        self.callback.on_train_begin(logs)
        self._last_step = self._iterations()
        self._pending, self._latest = {}, {}
        if self.before_train:
            self._fire(0, logs, at_epoch_end=False)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = epoch + 1
        self.callback.on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.every_k_steps is None:  # only epochs are counted
            return
        step = self._iterations()
        if step // self.every_k_steps > self._last_step // self.every_k_steps:
            self._fire(self._epoch, logs, at_epoch_end=False)
        self._last_step = step

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.every_k_epochs and (epoch + 1) % self.every_k_epochs == 0:
            self._fire(epoch + 1, logs, at_epoch_end=True)
        if self._pending and logs is not None:
            publish = getattr(self.callback, "publish", None)
            if callable(publish):
                publish(self._pending, logs)
            else:
                logs.update(self._pending)
        self._pending = {}
        self._latest = dict(logs or {})

    def on_train_end(self, logs=None) -> None:
        self.callback.on_train_end(logs)
