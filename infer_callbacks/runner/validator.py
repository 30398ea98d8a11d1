"""The runner's validation sets bound to one model: one engine binding per
input structure (sets of the same structure share the traced step) and, for
an asynchronous runner, the one snapshot of the weights they all read."""

from __future__ import annotations

import weakref
from typing import Any, Sequence

from infer_callbacks.runner.engine.base import Binding, EngineConfig
from infer_callbacks.runner.engine.select import current_engine
from infer_callbacks.runner.generation import Generation
from infer_callbacks.runner.passes import RunResults, run_sets
from infer_callbacks.runner.sets import ValidationSet

__all__ = ["Validator"]


def _structure(s: ValidationSet) -> tuple:
    return repr(s.input.dataset.element_spec), s.input.queued


class Validator:
    """``sets`` bound to ``model`` under ``strategy``.

    Args:
        model: the model (or ``None`` with a ``tower_func`` that needs none).
        sets: the runner's :class:`~infer_callbacks.runner.sets.ValidationSet` list.
        strategy: the strategy to validate under (``None``: TensorFlow's placement;
            under JAX a list of ``jax.Device`` or ``None``).
        key: what must stay equal for this validator to serve the model again.
        **engine: the other fields of :class:`EngineConfig` (``tower_func``,
            ``input_names``, ``whole_batches``, ``asynchronous``, ...).
    """

    def __init__(self, model, sets: Sequence[ValidationSet], strategy, key: Any, *,
                 generate=None, **engine):
        self._model = weakref.ref(model) if model is not None else (lambda: None)
        self.key, self.strategy, self.snapshot = key, strategy, None
        self.bindings: dict[tuple, Binding] = {}
        # generate=: its inferencers are fed on the host (generation.py), the others by the engine.
        self.generation = None if generate is None else Generation(
            generate, model, sets, keras_default=engine.get("tower_func") is None,
            input_names=engine.get("input_names"), asynchronous=engine.get("asynchronous", False))
        engine_ = current_engine()
        for s in sets:
            infs = s.infs if self.generation is None else self.generation.engine_infs(s)
            if infs and _structure(s) not in self.bindings:
                config = EngineConfig(input=s.input, infs=tuple(infs), snapshot=self.snapshot, **engine)
                binding = engine_.bind(model, strategy, config, key)
                self.bindings[_structure(s)], self.snapshot = binding, binding.snapshot

    def snapshot_weights(self, epoch_num: int) -> list | None:
        """The snapshot's weights while it holds epoch ``epoch_num``'s, else ``None``."""
        if self.snapshot is None or self.snapshot.epoch_num != epoch_num:
            return None
        return self.snapshot.numpy()

    @property
    def snapshot_nbytes(self) -> int:
        return 0 if self.snapshot is None else self.snapshot.nbytes

    def matches(self, model, key: Any) -> bool:
        return self._model() is model and self.key == key

    @property
    def tracing_count(self) -> int:
        return sum(b.tracing_count for b in self.bindings.values())

    def run(self, sets: Sequence[ValidationSet], ctx, **kwargs) -> RunResults:
        """One run over ``sets`` (see :func:`~infer_callbacks.runner.passes.run_sets`)."""
        return run_sets(sets, lambda s: self.bindings[_structure(s)], ctx, generation=self.generation, **kwargs)
