"""A runner bound to one model under Keras's PyTorch backend: the devices,
the tower run eagerly without autograd, and the host loop that feeds it.

| who | owns |
| --- | --- |
| :class:`TorchBinding` | the tower, the first trace (one small batch of zeros) that checks the fetch names, the weights each replica reads, the pass: batches from the input in blocks, calls paced by time and bytes |
| ``tower.TorchTower`` | the tower under ``keras.StatelessScope`` / ``keras.device``, fetch names |
| ``step.TorchStep`` | each batch of a block through the tower on its device, numpy out |
| ``host_blocks.Blocks`` (shared) | numpy blocks of batches: views of Keras-style arrays, groups from ``tf.data`` |
| ``host_chunk.JaxChunk`` (shared) | one call's outputs on the host, in dataset order |
| ``snapshot.TorchSnapshot`` | an asynchronous run's copy of the weights |

The interface is :class:`~infer_callbacks.runner.engine.base.Binding`'s
(the host side, ``runner/passes.py`` and ``runner/dispatch.py``, serves every engine).

Calls run in the runner's own thread: torch computes eagerly, and a small
model's batch is mostly Python (Keras's layers), which a second thread could
not overlap; ``tf.data`` prefetches the input in its own threads.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import torch

from infer_callbacks.runner.engine.base import (Binding, EngineConfig, choose_tower, named_fetch_error,
                                                require_model_for_snapshot)
from infer_callbacks.runner.engine.host_blocks import Blocks, group_size, grouped, structure
from infer_callbacks.runner.engine.pipeline import Pacer, pipelined
from infer_callbacks.runner.engine.torch.snapshot import TorchSnapshot
from infer_callbacks.runner.engine.torch.step import TorchStep
from infer_callbacks.runner.engine.torch.tower import TorchTower
from infer_callbacks.towers.keras_tower import keras_tower_func
from infer_callbacks.towers.spec import UnknownFetchError

__all__ = ["TorchBinding"]

_CALL_BYTES = 8 << 20  # a call's batches and outputs
_TRACE_ROWS = 2  # the size given to unknown dimensions in the first trace


def _zero_batch(element_spec: Any) -> list[np.ndarray]:
    """The leaves of one small batch of zeros of ``element_spec``."""
    def one(spec: tf.TensorSpec):
        if spec.dtype == tf.string:
            raise ValueError(f"The validation input has a string element ({spec}); under Keras's PyTorch "
                             "backend every batch element must be numeric. Encode strings as numbers "
                             "in the input pipeline (e.g. keras.layers.StringLookup in tf.data).")
        shape = tuple(_TRACE_ROWS if d is None else d for d in spec.shape.as_list())
        return np.zeros(shape, spec.dtype.as_numpy_dtype)
    return [one(s) for s in tf.nest.flatten(element_spec)]


class TorchBinding(Binding):
    """What a runner needs to validate ``model`` under Keras's PyTorch backend.

    Args:
        model: the model (or ``None`` with a ``tower_func`` that needs none).
        devices: ``torch.device`` list (whole batches per device), or
            ``None``: the model's own device.
        config: the runner's :class:`EngineConfig`.
        key: what the runner compares in :meth:`matches` to reuse the binding.

    Attributes:
        strategy: the devices (the runner only passes it back to the engine).
        max_rounds: the most rounds (batches per device) a call runs.
    """

    def __init__(self, model, devices: Sequence[torch.device] | None, config: EngineConfig, key: Any = None):
        super().__init__(model, devices, config, key)
        self.devices = list(devices) if devices else [None]
        tower_func, keras_default, input_names = choose_tower(model, config)
        self.variables = list(model.variables) if model is not None else []
        names = config.fetch_names
        element_spec = config.input.dataset.element_spec
        full = TorchTower(tower_func, self.variables, element_spec, names, keras_default=keras_default,
                          input_names=input_names)
        # Eagerly, the tower computes all it returns: the default one computes only what is fetched.
        self.tower = (TorchTower(keras_tower_func(model, names), self.variables, element_spec, names,
                                 keras_default=True, input_names=input_names) if keras_default else full)
        self.step = TorchStep(self.tower, self.devices)
        self.snapshot = None
        if config.asynchronous:
            require_model_for_snapshot(model)
            self.snapshot = config.snapshot if config.snapshot is not None else TorchSnapshot(model, self.variables)
        self.ranks = self._trace(config, element_spec, full)
        self.step.ranks = dict(self.ranks)
        self._set_fetches(names, list(self.ranks))
        self.max_rounds = config.steps_per_execution or 1024
        self._pace = 1  # rounds of a pass's first call
        self._group = 8  # batches per read from tf.data (sized by bytes after a pass)
        self._groups: dict = {}

    def _trace(self, config: EngineConfig, element_spec: Any, full: TorchTower) -> dict[str, int]:
        """One small batch of zeros through the tower, on the current
        weights (before any training step): checks every fetch name and
        records each output's rank. An unknown name is reported by the
        whole tower, so that the error lists every name there is."""
        leaves, pack, states = _zero_batch(element_spec), structure(element_spec), self._states(live=True)
        try:
            outputs = self.step.outputs(states, leaves, pack)
        except UnknownFetchError as e:
            if full is self.tower:
                raise named_fetch_error(e, config) from None
            self.tower = self.step.tower = full
            try:
                outputs = self.step.outputs(states, leaves, pack)
            except UnknownFetchError as e:
                raise named_fetch_error(e, config) from None
        return {k: int(np.ndim(v)) for k, v in outputs.items()}

    @property
    def tracing_count(self) -> int:
        """How many batch signatures (shapes, dtypes) the step has run;
        torch compiles nothing, so later passes add none of the same shapes."""
        return len(self.step.signatures)

    def can_block(self, names: Sequence[str]) -> bool:
        """Whether these fetches can travel as one block per call: none is a
        scalar per batch (a call's batches share their shapes)."""
        return all(self.ranks.get(n, 0) >= 1 for n in self.wanted(names))

    def _states(self, live: bool = False) -> list:
        """The values each replica reads: ``None`` for the variables
        themselves (on their own device), else the snapshot's or a copy on
        the replica's device (``live``: the variables even when asynchronous)."""
        home = self.variables[0].value.device if self.variables else None
        values = None
        if self.snapshot is not None and not live:
            if self.snapshot.values is None:
                raise RuntimeError("The asynchronous snapshot holds no weights yet; take() it before a run.")
            values = self.snapshot.values
        states = []
        for device in self.devices:
            if device is None or device == home:
                states.append(values)
            else:
                source = values if values is not None else [v.value.detach() for v in self.variables]
                states.append([t.to(device) for t in source])
        return states

    def _grouped(self, dataset) -> Any:
        """The grouped pipeline of ``dataset`` (kept: building it traces a function)."""
        key = (id(dataset), self._group)
        if self._groups.get("key") != key:
            self._groups = {"key": key, "dataset": grouped(dataset, self._group) if self._group > 1 else None,
                            "source": dataset}  # the source is kept alive, so its id stays its own
        return self._groups["dataset"]

    def blocks(self, input: Any = None):
        """A generator of ``(dataset batches, JaxChunk)``, one per call, in
        dataset order, over ``input`` (an input of this binding's structure;
        by default the configuration's); close it to stop early.

        Batches are read as numpy blocks (views of Keras-style arrays, or
        groups from the input's ``tf.data`` pipeline) and run in the
        caller's thread, each batch by itself."""
        input = self.config.input if input is None else input
        states = self._states()  # read here, in the runner's thread
        arrays = getattr(input, "arrays", None)
        blocks = Blocks(input, self._group, None if arrays is not None else self._grouped(input.dataset))
        pack = structure(input.dataset.element_spec)
        pacer = Pacer(self.max_rounds, start=self._pace, target_bytes=_CALL_BYTES)
        r = self.step.per_round

        def call():
            if blocks.peek() is None:
                return None, True
            leaves, count = blocks.take(pacer.limit * r)
            started = time.perf_counter()
            chunk, nbytes = self.step.run(states, leaves, count, pack)
            rounds = -(-count // r)
            pacer.observe(rounds, rounds, time.perf_counter() - started, nbytes)
            if count == pacer.limit * r:
                self._pace = pacer.limit
            self._group = group_size(sum(leaf[:1].nbytes for leaf in leaves))
            return (count, chunk), False

        yield from pipelined(call, background=False)
