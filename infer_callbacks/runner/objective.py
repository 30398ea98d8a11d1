"""``Objective``: one logged value made of several (a weighted sum, a
function of the logs, or an improvement rule over several values), put into
the logs next to the runners' results so that every callback can stop or
save on it: Keras's ``EarlyStopping`` and ``ModelCheckpoint``, keras-tuner,
``MinSaver`` / ``MaxSaver``.

Who owns what:

| piece | owns |
| --- | --- |
| the runners (``InferenceRunner``, ``PeriodicTrigger``) | measuring the values, putting them into ``logs`` |
| ``Objective`` | combining them into one key, right after the runners (it joins the run in ``set_model`` and moves itself after the validation producers in ``on_train_begin``, :mod:`~infer_callbacks.fit.keras_glue`), at the epoch end and after a mid-epoch run |
| ``Monitors`` | writing the key: in the epoch's row, and in the row of a mid-epoch run (:meth:`Objective.pop_derived_reports`) |

An ``Objective`` is not a validation producer (it has no ``pop_reports``):
it must come after them, and before every other callback.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping

import keras
import numpy as np

from infer_callbacks._util.copying import copy_callback
from infer_callbacks.fit import keras_glue
from infer_callbacks.runner.keras_names import keras_name
from infer_callbacks.fit.report import Report

__all__ = ["Objective", "RULES"]

RULES = ("any", "all", "first")
MODES = ("min", "max")


def _float(value: Any) -> float:
    return float(np.asarray(value.numpy() if hasattr(value, "numpy") else value))


class _Reading(dict):
    """The logs as a function of them sees them: ``validation_X`` found as
    ``val_X`` too (``keras_names=True``), and every key read remembered."""

    def __init__(self, logs: Mapping):
        super().__init__(logs)
        self.read: dict[str, float] = {}

    def __getitem__(self, key):
        name = key if dict.__contains__(self, key) else keras_name(key)
        value = dict.__getitem__(self, name)  # KeyError: not measured here
        self.read[key] = _float(value)
        return value

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key):
        return dict.__contains__(self, key) or dict.__contains__(self, keras_name(key))


class Objective(keras.callbacks.Callback):
    """One logged value made of several, which every callback sees at the
    epoch end whatever its place in the list (as the runners' results).

    Three kinds:

    * a weighted sum, ``weights_or_fn={"validation_loss": 1.0, "validation_error": 2.0}``;
    * a function of the logs, ``weights_or_fn=lambda logs: ...`` (a
      ``KeyError`` means its inputs were not measured at this point: no value);
    * an improvement rule over several values, ``weights_or_fn={"validation_loss":
      "min", "validation_bleu": "max"}`` with ``rule="any"`` (an improvement when
      any value is strictly better than its best so far), ``"all"`` (when every
      one is) or ``"first"`` (when the first is): marian's
      ``--early-stopping-on all|any|first`` (its ``all`` stops when all stall:
      ``rule="any"`` here). The published value is minus the number of
      improvements so far (``mode="min"``): it drops at each improvement, so
      ``EarlyStopping(name, mode="min", patience=p)`` stops after ``p``
      measurements without one and a ``MinSaver`` keeps the latest improving
      weights.

    The inputs are looked up as given and under Keras's names
    (``validation_loss`` is found as ``val_loss`` when the runner has
    ``keras_names=True``). A value is published only where every input was
    measured: at an epoch end whose logs hold them, and after a mid-epoch run
    of a ``PeriodicTrigger`` (in that batch's logs and the monitors' row at
    its step).

    Args:
        name: the key it publishes, e.g. ``"validation_objective"``.
        weights_or_fn: a dict ``{key: weight}``, a function of the logs, or
            (with ``rule``) a dict ``{key: "min" | "max"}``.
        mode: whether smaller (``"min"``) or larger (``"max"``) is better:
            for callbacks that ask (:attr:`mode`); ``"min"`` with ``rule``.
        rule: ``"any"``, ``"all"`` or ``"first"`` (see above); ``None`` for a
            weighted sum or a function.
        keras_names: publish ``validation_X`` as ``val_X``.

    Example:

    ```python
    callbacks = [keras.callbacks.EarlyStopping("validation_objective", mode="min", patience=3),
                 Objective("validation_objective", {"validation_loss": 1.0, "validation_error": 2.0}),
                 InferenceRunner(val_ds, [ScalarStats("loss"), ClassificationError()])]
    ```
    """

    def __init__(self, name: str, weights_or_fn: Mapping[str, Any] | Callable[[Mapping], float],
                 mode: str = "min", *, rule: str | None = None, keras_names: bool = False):
        super().__init__()
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be the key to publish, e.g. 'validation_objective'. Received: name={name!r}")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        if rule is not None and rule not in RULES:
            raise ValueError(f"`rule` must be one of {RULES} or None. Received: rule={rule!r}")
        if not isinstance(keras_names, bool):
            raise TypeError(f"`keras_names` must be True or False. Received: keras_names={keras_names!r}")
        if callable(weights_or_fn) and not isinstance(weights_or_fn, Mapping):
            if rule is not None:
                raise ValueError(f"rule={rule!r} needs a dict {{key: 'min' | 'max'}}, not a function.")
        elif isinstance(weights_or_fn, Mapping) and weights_or_fn:
            bad = {k: v for k, v in weights_or_fn.items() if not isinstance(k, str) or (
                v not in MODES if rule is not None
                else isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v))}
            if bad:
                want = "'min' or 'max'" if rule is not None else "finite numbers"
                raise ValueError(f"`weights_or_fn` values must be {want} (keys: logged names). Received: {bad}")
            if rule is not None and mode != "min":
                raise ValueError(f"With rule={rule!r} the published value is minus the number of "
                                 f"improvements (smaller is better): pass mode='min'. Received: mode={mode!r}")
        else:
            raise TypeError("`weights_or_fn` must be a non-empty dict {key: weight}, a function of the logs, "
                            "or (with rule=) a dict {key: 'min' | 'max'}. "
                            f"Received: weights_or_fn={weights_or_fn!r}")
        self.name = name
        self.weights_or_fn = weights_or_fn
        self.mode = mode
        self.rule = rule
        self.keras_names = keras_names
        self.key = keras_name(name) if keras_names else name
        self._reset()

    def _reset(self) -> None:
        self._fit_run: keras_glue.Run | None = None
        self._last_inputs: dict | None = None  # the inputs of the latest value
        self.value: float | None = None  # the latest value published
        self._bests: dict[str, float] = {}
        self.improvements = 0
        self._reports: list[Report] = []
        self._mid_epoch = False
        self._epoch_num = 0

    def __deepcopy__(self, memo: dict) -> "Objective":
        """The same settings, no state (keras-tuner copies callbacks per trial)."""
        new = copy_callback(self, memo, share=("weights_or_fn",))
        new._reset()
        return new

    def __repr__(self) -> str:
        return f"Objective({self.name!r})"

    # -- the value ------------------------------------------------------------

    def _is_fn(self) -> bool:
        return callable(self.weights_or_fn) and not isinstance(self.weights_or_fn, Mapping)

    def _read(self, logs: Mapping | None) -> tuple[dict[str, float], float | None] | None:
        """The inputs measured in ``logs`` and, for a function, its value
        (``None`` when an input is missing)."""
        reading = _Reading(logs or {})
        try:
            if self._is_fn():
                return reading.read, _float(self.weights_or_fn(reading))
            for key in self.weights_or_fn:
                reading[key]
        except KeyError:
            return None
        return reading.read, None

    def _compute(self, inputs: dict[str, float], called: float | None) -> float:
        how = self.weights_or_fn
        if self.rule is not None:
            better = {}
            for key, direction in how.items():
                v, best = inputs[key], self._bests.get(key)
                better[key] = math.isfinite(v) and (best is None or (v < best if direction == "min" else v > best))
                if better[key]:
                    self._bests[key] = v
            first = next(iter(how))
            improved = {"any": any(better.values()), "all": all(better.values()), "first": better[first]}
            self.improvements += bool(improved[self.rule])
            return -float(self.improvements)
        if isinstance(how, Mapping):
            return float(sum(w * inputs[k] for k, w in how.items()))
        return called

    def _measure(self, logs: Mapping | None, *, after_run: bool = False) -> bool:
        """Compute from ``logs`` if they hold a new measurement; whether they
        did. ``after_run``: only if an input is a runner's latest result
        (a training call's logs hold the training metrics at every step)."""
        read = self._read(logs)
        if read is None or read[0] == self._last_inputs:  # carried: the same measurement, counted once
            return False
        if after_run:
            produced = {k for p in (self._fit_run.producers() if self._fit_run is not None else ())
                        for k in (getattr(p, "last_results", None) or {})}
            if not any(k in produced or keras_name(k) in produced for k in read[0]):
                return False
        self.value, self._last_inputs = self._compute(*read), read[0]
        return True

    def _put(self, logs: dict | None) -> None:
        if logs is None or self.value is None:
            return
        if self.key in logs and logs[self.key] is not self.value:
            if _float(logs[self.key]) != self.value:
                raise ValueError(f"{self!r} publishes {self.key!r}, but the logs already hold it from another "
                                 "producer (a runner's result, Keras's own metric). Give the objective another name.")
        logs[self.key] = self.value

    def _step(self) -> int:
        iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
        return int(_float(iterations)) if iterations is not None else 0

    # -- Keras hooks ------------------------------------------------------------

    def set_model(self, model) -> None:
        super().set_model(model)
        self._fit_run = keras_glue.join(self)

    def on_train_begin(self, logs=None) -> None:
        run = self._fit_run
        self._reset()
        self._fit_run = run
        if run is None or not run.promote(self):
            self._fit_run = None
            keras_glue.warn_unjoined(self, f"callbacks placed before it miss {self.key!r} in on_epoch_end")

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._mid_epoch, self._epoch_num = False, epoch + 1

    def on_train_batch_end(self, batch, logs=None) -> None:
        # A PeriodicTrigger before it put a mid-epoch run's results into these logs.
        if self._measure(logs, after_run=True):
            self._put(logs)
            self._mid_epoch = True
            self._reports.append(Report(epoch_num=self._epoch_num, global_step=self._step(),
                                        scalars={self.key: self.value}))

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self._measure(logs) and self._mid_epoch:
            # Measured again at the epoch end after a mid-epoch value: the
            # epoch's row needs this one (it would carry the earlier one).
            self._reports.append(Report(epoch_num=epoch + 1, global_step=self._step(),
                                        scalars={self.key: self.value}))
        if self._read(logs) is not None:
            self._put(logs)

    def pop_derived_reports(self) -> list[Report]:
        """The values computed after mid-epoch runs (and an epoch-end value
        that follows one), for :class:`~infer_callbacks.Monitors`: like a
        runner's ``pop_reports``, but computed from the runners' results."""
        reports, self._reports = self._reports, []
        return reports
