"""``PeriodicTrigger``: run any callback every k epochs and/or every k steps."""

from __future__ import annotations

import keras

from infer_callbacks._copying import copy_callback

__all__ = ["PeriodicTrigger"]


def _is_runner(callback) -> bool:
    return callable(getattr(callback, "trigger", None)) and callable(getattr(callback, "pop_reports", None))


class PeriodicTrigger(keras.callbacks.Callback):
    """Runs a callback periodically instead of at the end of every epoch.

    The wrapped callback gets ``set_model``, ``set_params``,
    ``on_train_begin`` and ``on_train_end`` as usual. At its schedule:

    * an :class:`InferenceRunner` validates (results go into that epoch's
      ``logs``; a run after a training step goes into that batch's ``logs``
      and the next epoch's);
    * any other callback (``MaxSaver``, ``ModelCheckpoint``, your own) gets
      ``trigger(logs)`` if it has one, else ``on_epoch_end(epoch, logs)``
      with the latest epoch's logs and any newer validation results.

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
        self.every_k_epochs = every_k_epochs
        self.every_k_steps = every_k_steps
        self.before_train = before_train
        self._last_step = 0
        self._epoch = 0
        self._pending: dict[str, float] = {}
        self._latest: dict = {}
        if every_k_steps is None:
            # No batch hook at all when only epochs are counted.
            self.on_train_batch_end = keras.callbacks.Callback.on_train_batch_end.__get__(self)

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
        if callable(getattr(self.callback, "trigger", None)):
            self.callback.trigger(merged)
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
