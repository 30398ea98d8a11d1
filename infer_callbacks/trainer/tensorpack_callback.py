"""tensorpack's ``Callback`` base class as a Keras callback: the same template
methods and run context, in ``model.fit(callbacks=[...])`` and in the trainer
host alike.

The Keras hooks drive tensorpack's (``self.trainer`` is set first)::

    on_train_begin      _setup_graph()          once per model
                        _before_train()
    on_epoch_begin      _before_epoch()         epoch_num = epoch + 1
    on_train_batch_end  _trigger_step()         global_step = optimizer.iterations
    on_epoch_end        _after_epoch()
                        trigger_epoch() -> _trigger_epoch() -> trigger() -> _trigger()
    on_train_end        _after_train()

| who | owns |
| --- | --- |
| this class | mapping Keras's hooks to the template methods; ``epoch_num``, ``local_step``, ``chief_only``; adding what ``self.trainer.monitors`` got to the epoch's ``logs`` |
| :class:`CallbackTrainer` | what tensorpack callbacks call on ``self.trainer``: ``get_predictor``, ``monitors``, ``epoch_num``, ``global_step`` |
| the subclass (the user's) | the template methods |

It lives in ``trainer/`` rather than ``runner/`` because ``self.trainer.get_predictor``
needs ``predict/``, which sits above ``runner/`` (``predict`` -> ``checkpoints`` -> ``runner``).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Sequence

import keras

from infer_callbacks._util import global_step
from infer_callbacks.distribute.devices import is_chief, model_strategy
from infer_callbacks.inferencers.context import MonitorsHandle, TrainerHandle
from infer_callbacks.predict.predictor import OfflinePredictor, get_predictor

__all__ = ["Callback", "CallbackTrainer"]


@dataclasses.dataclass
class CallbackTrainer(TrainerHandle):
    """``self.trainer`` of a :class:`Callback`: the model, ``epoch_num``,
    ``global_step``, ``is_chief``, ``monitors`` (``put_scalar``,
    ``get_latest``, ...) and :meth:`get_predictor`."""

    def get_predictor(self, input_names: Sequence[str] | None = None,
                      output_names: Sequence[str] | None = None,
                      device: int | str | None = None) -> OfflinePredictor:
        """A predictor on the model's current weights, in inference mode
        (tensorpack's ``trainer.get_predictor``): numpy in, a list of numpy
        arrays out. ``device``: an int GPU id (one this machine lacks falls
        back to TensorFlow's placement with a warning) or a device string.
        See :func:`infer_callbacks.predict.predictor.get_predictor`."""
        if self.model is None:
            raise ValueError("get_predictor() needs the model: call it from _setup_graph() or a "
                             "later hook, once training has started.")
        return get_predictor(self.model, input_names, output_names, device=device)


def _overrides(obj: Any, name: str) -> bool:
    return getattr(type(obj), name) is not getattr(Callback, name)


class Callback(keras.callbacks.Callback):
    """tensorpack's ``Callback``: override the template methods, read
    ``self.trainer``, ``self.epoch_num`` and ``self.global_step``.

    Template methods (all optional): ``_setup_graph()`` (once per model,
    before training: build predictors here with
    ``self.trainer.get_predictor(input_names, output_names, device=i)``),
    ``_before_train()``, ``_before_epoch()``, ``_trigger_step()`` (after each
    training step), ``_after_epoch()``, ``_trigger_epoch()`` (after each
    epoch; by default calls :meth:`trigger`, which calls ``_trigger()``),
    ``_after_train()``. :class:`~infer_callbacks.PeriodicTrigger` calls
    :meth:`trigger` on its own schedule instead of ``trigger_epoch``.

    Scalars put with ``self.trainer.monitors.put_scalar(name, v)`` go into the
    epoch's ``logs`` after ``_trigger_epoch`` (callbacks after this one, such
    as ``Monitors``, see them; a name already in ``logs`` is not overwritten).

    ``chief_only`` is ``True`` by default, as in tensorpack: on a worker that
    is not the chief, none of the template methods run. Use
    ``set_chief_only(False)`` for callbacks every worker must run.

    Example:

    ```python
    class Eval(Callback):
        def _setup_graph(self):
            self.pred = self.trainer.get_predictor(["input"], ["output"], device=0)
        def _trigger(self):
            (out,) = self.pred(x_val)
            self.trainer.monitors.put_scalar("val_mean_output", out.mean())

    model.fit(x, y, epochs=2, callbacks=[Eval()])
    ```
    """

    _chief_only = True

    # -- run context --------------------------------------------------------

    @property
    def trainer(self) -> CallbackTrainer:
        """The run's :class:`CallbackTrainer` (available from ``_setup_graph`` on)."""
        handle = self.__dict__.get("_tp_trainer")
        if handle is None:
            raise AttributeError(f"{self}.trainer is set when training starts (in on_train_begin, "
                                 "before _setup_graph); it is not available before.")
        return handle

    @property
    def epoch_num(self) -> int:
        """The current epoch, 1-based (0 before the first one), as in tensorpack."""
        return self.__dict__.get("_tp_epoch_num", 0)

    @property
    def global_step(self) -> int:
        """The optimizer's ``iterations``: training steps done so far."""
        return global_step(self.__dict__.get("_model"))

    @property
    def local_step(self) -> int:
        """The index of the current step within the epoch (0-based)."""
        return self.__dict__.get("_tp_local_step", 0)

    @property
    def chief_only(self) -> bool:
        """Run the template methods only on the chief worker (default ``True``)."""
        return self._chief_only

    @chief_only.setter
    def chief_only(self, v: bool) -> None:
        self._chief_only = bool(v)

    def set_chief_only(self, v: bool = True) -> "Callback":
        """Set :attr:`chief_only`; returns the callback (for chaining)."""
        self.chief_only = v
        return self

    def _active(self) -> bool:
        return self.__dict__.get("_tp_active", True)

    def _sync(self) -> None:
        handle = self.__dict__.get("_tp_trainer")
        if handle is not None:
            handle.epoch_num = self.epoch_num
            handle.global_step = self.global_step

    # -- Keras hooks --------------------------------------------------------

    def on_train_begin(self, logs=None) -> None:
        model = self.model
        chief = is_chief(model_strategy(model))
        self._tp_active = chief or not self.chief_only
        self._tp_epoch_num, self._tp_local_step = 0, 0
        self._tp_trainer = CallbackTrainer(model=model, epoch_num=0, global_step=self.global_step,
                                           is_chief=chief, monitors=MonitorsHandle())
        if not self._tp_active:
            return
        if self.__dict__.get("_tp_setup_model") is not model:
            self._setup_graph()
            self._tp_setup_model = model
        self._before_train()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._tp_epoch_num, self._tp_local_step = int(epoch) + 1, 0
        if self._active():
            self._sync()
            self._before_epoch()

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._tp_local_step = int(batch)
        if self._active() and _overrides(self, "_trigger_step"):
            self._sync()
            self._trigger_step()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._tp_epoch_num = int(epoch) + 1
        if not self._active():
            return
        self._sync()
        self._after_epoch()
        self.trigger_epoch()
        self._publish(logs)

    def on_train_end(self, logs=None) -> None:
        if self._active():
            self._sync()
            self._after_train()
            self._publish(logs)

    def _publish(self, logs) -> None:
        scalars, images = self.trainer.monitors.drain()
        if images:
            warnings.warn(f"{self}: images put with trainer.monitors.put_image ({sorted(images)}) "
                          "have nowhere to go from a Callback; put scalars, or write the images "
                          "yourself.", stacklevel=2)
        if logs is None:
            return
        clash = sorted(k for k in scalars if k in logs)
        if clash:
            warnings.warn(f"{self}: put_scalar names {clash} are already in the logs; the values "
                          "in the logs are kept. Choose other names.", stacklevel=2)
        logs.update({k: v for k, v in scalars.items() if k not in logs})

    # -- tensorpack's public methods and template methods -----------------------

    def trigger_epoch(self) -> None:
        """After each epoch: calls ``_trigger_epoch()``."""
        self._trigger_epoch()

    def trigger(self, logs: dict | None = None) -> None:
        """Calls ``_trigger()`` (what :class:`~infer_callbacks.PeriodicTrigger`
        calls; ``logs`` is the latest logs it passes, unused here)."""
        if self._active():
            self._sync()
            self._trigger()

    def _setup_graph(self) -> None:
        """Once per model, before training; ``self.trainer`` is available."""

    def _before_train(self) -> None:
        """Right before the first training step."""

    def _before_epoch(self) -> None:
        """Right before each epoch."""

    def _after_epoch(self) -> None:
        """Right after each epoch, before ``trigger_epoch``."""

    def _trigger_step(self) -> None:
        """After each training step."""

    def _trigger_epoch(self) -> None:
        """After each epoch; by default calls :meth:`trigger`."""
        self.trigger()

    def _trigger(self) -> None:
        """What the callback does when triggered (by ``_trigger_epoch`` or a scheduler)."""

    def _after_train(self) -> None:
        """After training."""

    def __str__(self) -> str:
        return type(self).__name__
