"""The written protocol of a validation producer: what the other callbacks
of a run (``Monitors``, the savers, a ``PeriodicTrigger``) may ask of a
callback that measures the model, and nothing more.

A producer is found through the run it joined (``keras_glue.Run.producers``);
``InferenceRunner``, ``DataParallelInferenceRunner`` and ``Objective`` are
producers, and so is any callback that offers :meth:`ValidationProducer.pop_reports`.

| member | asked by | meaning |
| --- | --- | --- |
| ``pop_reports()`` | ``Monitors``, ``SidecarEvaluator`` | the :class:`~infer_callbacks.fit.report.Report` of each run since the last call |
| ``set_names`` | ``Monitors`` | the names of the producer's validation sets (``[]`` for one unnamed set) |
| ``asynchronous`` | the savers | whether its results reach ``logs`` one epoch or more late |
| ``epoch_key`` | the savers | the ``logs`` key naming the epoch an asynchronous result measures |
| ``snapshot_weights(epoch)`` | the savers | the weights an asynchronous run validated for ``epoch`` (``model.weights`` order), or ``None`` |

The optional members are read with :func:`snapshot_weights_of`,
:func:`is_asynchronous` and :func:`set_names_of`, so a producer that lacks
them (a user's own) is still one.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from infer_callbacks.fit.report import Report

__all__ = ["ValidationProducer", "is_asynchronous", "set_names_of", "snapshot_weights_of", "epoch_key_of"]


@runtime_checkable
class ValidationProducer(Protocol):
    """A callback whose runs report validation results (see the table above)."""

    def pop_reports(self) -> Sequence[Report]:
        """The reports of the runs since the last call."""


def is_asynchronous(producer: Any) -> bool:
    """Whether ``producer``'s results reach ``logs`` late (an asynchronous runner)."""
    return bool(getattr(producer, "asynchronous", False))


def epoch_key_of(producer: Any) -> str | None:
    """The ``logs`` key naming the epoch ``producer``'s results measure, if any."""
    key = getattr(producer, "epoch_key", None)
    return key if isinstance(key, str) else None


def set_names_of(producer: Any) -> list[str]:
    """``producer``'s validation set names (``[]`` for one unnamed set)."""
    return list(getattr(producer, "set_names", ()) or ())


def snapshot_weights_of(producer: Any, epoch_num: int) -> list | None:
    """The weights ``producer`` validated for ``epoch_num``, or ``None``."""
    method = getattr(producer, "snapshot_weights", None)
    return method(epoch_num) if callable(method) else None
