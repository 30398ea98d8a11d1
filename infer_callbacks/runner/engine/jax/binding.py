"""A runner bound to one model under Keras's JAX backend: the devices, the
tower as a pure function of the variables' values, the compiled step, and
the host loop that feeds it.

| who | owns |
| --- | --- |
| :class:`JaxBinding` | the tower, the first (abstract) trace that checks the fetch names, the pass: batches from the input, calls paced by time and bytes, one call in flight while the host hands the previous one to the inferencers |
| ``tower.JaxTower`` | the tower under ``keras.StatelessScope``, fetch names |
| ``step.JaxStep`` | the ``jax.jit`` step over the devices, stacking and placing batches |
| ``sizes.CallSizes`` | each call's size (rounds), so that only a first pass compiles |
| ``split_step.JaxSplitStep`` | the same under ``keras.distribution.DataParallel``: each batch split across its mesh |
| ``host_chunk.JaxChunk`` (shared) | one call's outputs on the host, in dataset order |
| ``snapshot.JaxSnapshot`` | an asynchronous run's copy of the weights |

The interface is :class:`~infer_callbacks.runner.engine.base.Binding`'s
(the host side, ``runner/passes.py`` and ``runner/dispatch.py``, serves every engine).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import jax
import numpy as np
import tensorflow as tf

from infer_callbacks.runner.engine.base import (Binding, EngineConfig, choose_tower, named_fetch_error,
                                                require_model_for_snapshot)
from infer_callbacks.runner.engine.host_blocks import Blocks, group_size, grouped, structure
from infer_callbacks.runner.engine.jax.distribution import BatchSplit
from infer_callbacks.runner.engine.host_processes import ProcessPass, ProcessShare, Share
from infer_callbacks.runner.engine.jax.sizes import CallSizes
from infer_callbacks.runner.engine.jax.snapshot import JaxSnapshot, current_values
from infer_callbacks.runner.engine.jax.split_step import JaxSplitStep
from infer_callbacks.runner.engine.jax.step import JaxStep, capacity
from infer_callbacks.runner.engine.jax.tower import JaxTower
from infer_callbacks.runner.engine.pipeline import Pacer, pipelined
from infer_callbacks.towers.spec import UnknownFetchError

__all__ = ["JaxBinding"]

# A call's bytes (batches in, outputs out): placing a large buffer on a CPU
# device costs more per byte than several small ones (bench_jax.py's CNN).
_CALL_BYTES = 8 << 20
_ABSTRACT_ROWS = 2  # the size given to unknown dimensions in the first, abstract trace


def _abstract_batch(element_spec: Any) -> Any:
    """``jax.ShapeDtypeStruct``s for one batch of ``element_spec``."""
    def one(spec: tf.TensorSpec):
        if spec.dtype == tf.string:
            raise ValueError(f"The validation input has a string element ({spec}); under Keras's JAX "
                             "backend every batch element must be numeric. Encode strings as numbers "
                             "in the input pipeline (e.g. keras.layers.StringLookup in tf.data).")
        shape = tuple(_ABSTRACT_ROWS if d is None else d for d in spec.shape.as_list())
        return jax.ShapeDtypeStruct(shape, np.dtype(spec.dtype.as_numpy_dtype))
    return tf.nest.map_structure(one, element_spec)


class JaxBinding(Binding):
    """What a runner needs to validate ``model`` under Keras's JAX backend.

    Args:
        model: the model (or ``None`` with a ``tower_func`` that needs none).
        devices: ``jax.Device`` list (whole batches per device), a
            ``BatchSplit`` (a ``keras.distribution.DataParallel``: each batch
            split across its mesh), or ``None``: JAX's default device.
        config: the runner's :class:`EngineConfig`.
        key: what the runner compares in :meth:`matches` to reuse the binding.

    Attributes:
        strategy: the devices (the runner only passes it back to the engine).
        max_rounds: the most rounds (batches per device) a call runs.
    """

    def __init__(self, model, devices: Sequence[jax.Device] | BatchSplit | None, config: EngineConfig,
                 key: Any = None):
        super().__init__(model, devices, config, key)
        self._config = config
        split = devices if isinstance(devices, BatchSplit) else None
        self.processes = devices if isinstance(devices, ProcessShare) else None
        if self.processes is not None:
            devices = list(self.processes.devices)
            if config.asynchronous:
                raise ValueError(
                    f"asynchronous=True cannot validate across JAX processes ({self.processes.count} "
                    "here): each process would exchange its results from a background thread while "
                    "training's collectives run, and a process that stops training early would leave "
                    "the others waiting. Validate synchronously (asynchronous=False), or evaluate "
                    "checkpoints beside training with SidecarEvaluator.")
        self.devices = split.devices if split else list(devices) if devices else [jax.devices()[0]]
        tower_func, keras_default, input_names = choose_tower(model, config)
        self.variables = list(model.variables) if model is not None else []
        names = config.fetch_names
        element_spec = config.input.dataset.element_spec
        self.tower = JaxTower(tower_func, self.variables, element_spec, names, keras_default=keras_default,
                              input_names=input_names)
        self.specs = self._trace(config, element_spec)
        self.ranks = {k: len(s.shape) for k, s in self.specs.items()}
        self._set_fetches(names, list(self.specs))
        self.step = (JaxSplitStep(self.tower, split, self.ranks, self.variables) if split
                     else JaxStep(self.tower, self.devices, self.ranks))
        self.max_rounds = config.steps_per_execution or 1024
        self.snapshot = None
        if config.asynchronous:
            require_model_for_snapshot(model)
            self.snapshot = (config.snapshot if config.snapshot is not None
                             else JaxSnapshot(model, self.variables, self.step.place))
        self._pace = 1  # rounds of a pass's first call
        self._group = 8  # batches per read from tf.data (sized by bytes after a pass)
        self._groups: dict = {}
        self._sizes = CallSizes(self.max_rounds, self.step.per_round)  # see sizes.py

    def _trace(self, config: EngineConfig, element_spec: Any) -> dict:
        """One abstract trace on the input's structure: checks every fetch
        name (before any training step) and records the outputs' shapes."""
        values = [jax.ShapeDtypeStruct(tuple(v.shape), np.dtype(v.dtype)) for v in self.variables]
        try:
            return self.tower.output_shapes(values, _abstract_batch(element_spec))
        except UnknownFetchError as e:
            raise named_fetch_error(e, config) from None

    @property
    def tracing_count(self) -> int:
        """How many step variants JAX traced (one per batch shape and call size)."""
        return self.step.compiles

    def can_block(self, names: Sequence[str]) -> bool:
        """Whether these fetches can travel as one block per call: none is a
        scalar per batch (a call's batches share their shapes)."""
        return all(self.ranks.get(n, 0) >= 1 for n in self.wanted(names))

    def _state(self) -> list:
        """The values this pass validates, on the devices."""
        if self.snapshot is not None:
            if self.snapshot.values is None:
                raise RuntimeError("The asynchronous snapshot holds no weights yet; take() it before a run.")
            return self.snapshot.values
        values = current_values(self.model, self.variables)
        if self.processes is not None:  # replicated across processes: this process's copy
            values = [v if not isinstance(v, jax.Array) or v.is_fully_addressable else v.addressable_data(0)
                      for v in values]
        return self.step.place(values)

    def _grouped(self, dataset) -> Any:
        """The grouped pipeline of ``dataset`` (kept: building it traces a function)."""
        key = (id(dataset), self._group)
        if self._groups.get("key") != key:
            self._groups = {"key": key, "dataset": grouped(dataset, self._group) if self._group > 1 else None,
                            "source": dataset}  # the source is kept alive, so its id stays its own
        return self._groups["dataset"]

    def pass_blocks(self, input: Any, plan):
        """:meth:`blocks`; across JAX processes, this process's share of
        whole batches combined with the others' (``host_processes.py``)."""
        if self.processes is None:
            return self.blocks(input)
        share = Share(self.processes.index, self.processes.count)
        self._process_pass = ProcessPass(self.blocks(input, share), share, list(plan), self.ranks,
                                         self._config.collective_timeout)
        return self._process_pass.blocks()

    def end_pass(self, outcome: tuple, samples: int) -> tuple[tuple, int]:
        """Across JAX processes: process 0's results, the whole set's samples."""
        if self.processes is None:
            return outcome, samples
        results, monitor_only, images = outcome
        results, samples = self._process_pass.agree(results, samples)
        return (results, monitor_only, images), samples

    def pass_failed(self, error: BaseException) -> None:
        if self.processes is not None and getattr(self, "_process_pass", None) is not None:
            self._process_pass.fail(error)

    def blocks(self, input: Any = None, share: Share | None = None):
        """A generator of ``(dataset batches, JaxChunk)``, one per step
        call, in dataset order, over ``input`` (an input of this binding's
        structure; by default the configuration's); close it to stop early.

        Batches are read as numpy blocks (views of Keras-style arrays, or
        groups from the input's ``tf.data`` pipeline) and placed on the
        devices in the caller's thread: JAX dispatches a call and returns, so
        one call computes while the previous one's outputs go to the
        inferencers, with no thread of ours (a thread's start and hand-offs
        cost more than a small model's whole pass). ``share`` keeps this
        process's batches (across JAX processes)."""
        input = self._config.input if input is None else input
        state = self._state()  # read here, in the runner's thread
        arrays = getattr(input, "arrays", None)
        blocks = Blocks(input, self._group, None if arrays is not None else self._grouped(input.dataset),
                        share=share)
        pack = structure(input.dataset.element_spec)
        pacer = Pacer(self.max_rounds, start=self._pace, target_bytes=_CALL_BYTES)
        r = self.step.per_round
        run = {"pending": None, "finished": 0.0}

        def call():
            sig, leaves, count = blocks.peek(), (), 0
            if sig is not None:
                leaves, count = blocks.take(self._sizes.most(sig, capacity(pacer.limit, self.max_rounds)))
            launched = (self.step.launch(state, leaves, count, self._sizes.rounds(sig, count), pack)
                        if count else None)
            previous, run["pending"] = run["pending"], launched
            if previous is None:
                return None, launched is None
            chunk, nbytes = self.step.finish(previous)
            # A call starts on the device when it is launched or when the one
            # before it ends, whichever is later.
            finished, began = time.perf_counter(), max(previous.started, run["finished"])
            run["finished"] = finished
            self._group = group_size(previous.nbytes / max(1, previous.rounds * r))
            if not previous.compiled:  # a compiling call says nothing of the pace
                pacer.observe(previous.rounds, previous.rounds, finished - began, nbytes)
                if previous.count == previous.rounds * r:
                    self._pace = pacer.limit
            return (previous.count, chunk), launched is None

        try:
            yield from pipelined(call, background=False)
        finally:
            if self._sizes.compiled:  # later passes reuse the compiled call sizes
                self._sizes.pass_ended()
