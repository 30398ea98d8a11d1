"""Checks of ``SidecarEvaluator``'s constructor arguments: each error names
the argument, the value received and what would be valid."""

from __future__ import annotations

from typing import Any

import keras

from infer_callbacks.monitors.callback import JSONWriter, Monitors, MonitorWriter, ScalarPrinter, TFEventWriter

__all__ = ["positive", "check_model", "check_monitors"]


def positive(name: str, value: Any, *, integer: bool, optional: bool) -> Any:
    if value is None and optional:
        return None
    ok = not isinstance(value, bool) and (isinstance(value, int) if integer
                                          else isinstance(value, (int, float)))
    if not ok or value <= 0:
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise ValueError(f"`{name}` must be {kind}{' or None' if optional else ''}. "
                         f"Received: {name}={value!r}")
    return value


def check_model(model: Any) -> keras.Model:
    if not isinstance(model, keras.Model) and callable(model):
        model = model()
    if not isinstance(model, keras.Model):
        raise TypeError("`model` must be a keras.Model (compiled, built) or a function "
                        f"returning one. Received: model={model!r}")
    if not model.built:
        raise ValueError(f"`model` must be built (give it an Input or call it once) so that the "
                         f"checkpoints can be restored into it. Received: unbuilt {model.name!r}")
    return model


def check_monitors(monitors: Any, logdir: str | None) -> Monitors:
    if monitors is None:
        writers: list[MonitorWriter] = [ScalarPrinter()]
        if logdir is not None:
            writers += [JSONWriter(logdir), TFEventWriter(logdir)]
        return Monitors(writers)
    if isinstance(monitors, Monitors):
        return monitors
    return Monitors(monitors)  # validates a writer or a list of writers
