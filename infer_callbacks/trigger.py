"""``PeriodicTrigger``: run a runner every k epochs and/or every k steps."""

from __future__ import annotations

import keras

__all__ = ["PeriodicTrigger"]


class PeriodicTrigger(keras.callbacks.Callback):
    """Runs ``runner`` periodically instead of at the end of every epoch.

    Args:
        runner: an :class:`InferenceRunner` (or anything with ``trigger()``
            returning a dict of results).
        every_k_epochs: run after every k-th epoch (results go into that
            epoch's ``logs``).
        every_k_steps: run after every k-th training step (results go into
            that batch's ``logs`` and the next epoch's ``logs``); k counts global
            steps (``optimizer.iterations``), as in tensorpack. Only this
            option adds a batch hook, which makes Keras dispatch batch hooks
            synchronously.
        before_train: also run once before the first training step.

    Example:

    ```python
    PeriodicTrigger(InferenceRunner(val_ds, ScalarStats("loss")), every_k_epochs=5)
    ```
    """

    def __init__(self, runner, every_k_epochs: int | None = None, every_k_steps: int | None = None,
                 before_train: bool = False):
        super().__init__()
        for name, value in (("every_k_epochs", every_k_epochs), ("every_k_steps", every_k_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")
        if every_k_epochs is None and every_k_steps is None and not before_train:
            raise ValueError(
                "PeriodicTrigger needs a period: pass every_k_epochs=, every_k_steps= "
                "or before_train=True.")
        if not callable(getattr(runner, "trigger", None)):
            raise TypeError(f"`runner` must have a trigger() method (an InferenceRunner). Received: {runner!r}")
        self.runner = runner
        self.every_k_epochs = every_k_epochs
        self.every_k_steps = every_k_steps
        self.before_train = before_train
        if hasattr(runner, "run_at_epoch_end"):
            runner.run_at_epoch_end = False
        self._step = 0
        self._pending: dict[str, float] = {}
        if every_k_steps is None:
            # Keep Keras's asynchronous batch dispatch: no batch hook at all.
            self.on_train_batch_end = keras.callbacks.Callback.on_train_batch_end.__get__(self)

    def set_model(self, model) -> None:
        super().set_model(model)
        self.runner.set_model(model)

    def set_params(self, params) -> None:
        super().set_params(params)
        self.runner.set_params(params)

    def on_train_begin(self, logs=None) -> None:
        if hasattr(self.runner, "_move_before_consumers"):
            self.runner._move_before_consumers()
        self.runner.on_train_begin(logs)
        iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
        self._step = int(iterations.numpy()) if iterations is not None else 0
        if self.before_train:
            self._pending = dict(self.runner.trigger())
            if logs is not None:
                logs.update(self._pending)

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._step += 1
        if self.every_k_steps and self._step % self.every_k_steps == 0:
            self._pending = dict(self.runner.trigger())
            if logs is not None:
                logs.update(self._pending)

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.every_k_epochs and (epoch + 1) % self.every_k_epochs == 0:
            self._pending = dict(self.runner.trigger())
        if logs is not None and self._pending:
            logs.update(self._pending)
        self._pending = {}

    def on_train_end(self, logs=None) -> None:
        self.runner.on_train_end(logs)
