"""``InferenceRunner``'s keyword options, grouped by what they govern, each
checked at construction (an error names the option, the value received and
what would be valid).

| group | options |
| --- | --- |
| the tower | ``tower_name``, ``input_names``, ``generate`` |
| speed | ``steps_per_execution``, ``pipeline``, ``prefetch`` |
| what is reported | ``on_nonfinite``, ``keras_names``, ``combine``, ``limit_batches``, ``batch_size``, ``verbose`` |
| asynchronous runs | ``async_timeout``, ``epoch_key`` (with ``asynchronous=True``) |
| across processes | ``collective_timeout`` |
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

__all__ = ["RunnerOptions"]


def _positive_int_or_none(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class RunnerOptions:
    """The keyword options of :class:`~infer_callbacks.InferenceRunner`
    (and of :class:`~infer_callbacks.DataParallelInferenceRunner`), with
    their defaults.

    Attributes:
        tower_name: a name for this runner's tower (tensorpack's argument;
            shown in messages and the progress bar).
        input_names: names of the positional batch elements, when
            ``tower_func``'s parameter names are not the ones to fetch.
        generate: evaluation by generation: ``fn(model, inputs)`` runs on
            the host for every batch and returns ``{name: outputs}``
            (strings or token ids, one per example); inferencers fetching
            those names get them with the batch's inputs and labels (see
            ``runner/generation.py``). With ``asynchronous=True`` it runs on
            a copy of the model holding the snapshot's weights.
        steps_per_execution: the most batches per compiled call. ``None``
            (default): as many as take about a quarter of a second and hold
            at most 64 MiB of fetched values, up to 1024 (64 when validating
            across workers, where every call has this size). A pass starts
            at the pace the previous one reached.
        pipeline: run the calls in a background thread, so the device works
            on the next batches while the host feeds the inferencers (on
            TensorFlow; JAX's dispatch is asynchronous, so its engine
            overlaps them with no thread of its own; PyTorch runs each
            batch eagerly in the runner's thread).
        prefetch: batches to prefetch; ``None`` lets tf.data tune it.
        on_nonfinite: ``'warn'`` (report NaN/inf and go on) or ``'raise'``.
        keras_names: report ``validation_X`` as ``val_X`` (Keras's own
            names, which ``EarlyStopping(mode="auto")`` and Keras's
            ``TensorBoard`` understand); see ``runner/keras_names.py``.
        combine: with several sets, also report each result under its
            unnamed key (``validation_loss``), combined over the sets:
            ``'mean'``, ``'min'``, ``'max'``, ``{set name: weight}`` (a
            weighted sum) or a function of ``{set name: value}``.
        limit_batches: validate on the same first ``N`` batches of each set
            every run (an int, or a fraction of the set's batches); the
            numbers are exact over those, and ``validation_num_samples``
            says how many samples they cover.
        batch_size: the batch size for Keras-style arrays (default 32, as
            ``evaluate``); an error with any other input.
        verbose: ``'auto'`` (default): a progress bar on a terminal, unless
            ``fit(verbose=0)``; ``True``: always; ``False``: never.
        async_timeout: the most seconds to wait for a background run.
        epoch_key: the ``logs`` key naming the epoch an asynchronous result
            measures.
        collective_timeout: under JAX's distributed runtime (several
            processes), the most seconds a process waits for another during
            a run; then every process raises, naming the one that did not
            answer (see ``docs/devices.md``). Keep it below JAX's heartbeat
            timeout (100 s), after which JAX itself aborts the survivors.
    """

    tower_name: str | None = None
    input_names: Sequence[str] | None = None
    generate: Callable | None = None
    steps_per_execution: int | None = None
    pipeline: bool = True
    prefetch: int | None = None
    on_nonfinite: str = "warn"
    keras_names: bool = False
    combine: Any = None
    limit_batches: int | float | None = None
    batch_size: int | None = None
    verbose: bool | str = "auto"
    async_timeout: float = 3600.0
    epoch_key: str = "validation_epoch"
    collective_timeout: float = 60.0

    def __post_init__(self):
        _positive_int_or_none("steps_per_execution", self.steps_per_execution)
        if self.on_nonfinite not in ("warn", "raise"):
            raise ValueError("`on_nonfinite` must be 'warn' (report NaN/inf and go on) or 'raise'. "
                             f"Received: on_nonfinite={self.on_nonfinite!r}")
        if self.tower_name is not None and not isinstance(self.tower_name, str):
            raise TypeError(f"`tower_name` must be a string. Received: {self.tower_name!r}")
        if not isinstance(self.keras_names, bool):
            raise TypeError(f"`keras_names` must be True or False. Received: keras_names={self.keras_names!r}")
        if self.verbose != "auto" and not isinstance(self.verbose, (bool, int)):
            raise ValueError(f"`verbose` must be 'auto', True or False. Received: verbose={self.verbose!r}")
        if self.generate is not None and not callable(self.generate):
            raise TypeError("`generate` must be a function `fn(model, inputs) -> {name: outputs}` (e.g. "
                            f"`lambda model, x: {{'generated': model.generate(x)}}`). "
                            f"Received: generate={self.generate!r}")
        for name in ("async_timeout", "collective_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` must be a positive number of seconds. Received: {name}={value!r}")
        if not isinstance(self.epoch_key, str) or not self.epoch_key:
            raise TypeError(f"`epoch_key` must be a non-empty string. Received: epoch_key={self.epoch_key!r}")
