"""The TensorFlow engine's binding: one model bound to one input structure
under a ``tf.distribute`` placement (``None``: TensorFlow's own placement, a
``OneDeviceStrategy``, a ``MirroredStrategy`` whose replicas take whole
batches or split each batch, or a ``MultiWorkerMirroredStrategy``), the
tower traced once with ``tf.function``, the compiled multi-batch step.

A runner is reusable across ``fit`` calls, models and trainers: it makes a
new binding whenever the model (or its strategy) changes and keeps the
traced step while it does not. Nothing is stored on the model.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import tensorflow as tf

from infer_callbacks.distribute.cross_worker import shard_for_worker
from infer_callbacks.distribute.devices import is_chief, spans_workers
from infer_callbacks.runner.engine.base import (Binding, EngineConfig, choose_tower, named_fetch_error,
                                                require_model_for_snapshot)
from infer_callbacks.runner.engine.pipeline import Pacer, pipelined
from infer_callbacks.runner.engine.tensorflow.chunk import Chunk
from infer_callbacks.runner.engine.tensorflow.snapshot import Snapshot, scoped
from infer_callbacks.runner.engine.tensorflow.step import NUM_SAMPLES, static_inner, make_step
from infer_callbacks.towers.spec import SAMPLE_WEIGHT_KEY, TowerSpec, UnknownFetchError

__all__ = ["TensorFlowBinding", "SAMPLE_WEIGHT"]

SAMPLE_WEIGHT = SAMPLE_WEIGHT_KEY


def _worker_index(strategy: tf.distribute.Strategy) -> int:
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief":
        return 0
    return int(resolver.task_id) + (1 if "chief" in cluster else 0)


class TensorFlowBinding(Binding):
    """What a runner needs to validate ``model``.

    Attributes:
        strategy: the devices' strategy, or ``None`` (TensorFlow's placement).
        mode: ``'single'``, ``'whole'`` or ``'split'`` (see ``step.py``).
    """

    def __init__(self, model, strategy: tf.distribute.Strategy | None, config: EngineConfig, key: Any = None):
        super().__init__(model, strategy, config, key)
        self.mode, self.multi_worker = self._mode(config)
        element_spec = config.input.dataset.element_spec
        tower_func, keras_default, input_names = choose_tower(model, config)
        self.tower = TowerSpec(tower_func, element_spec, keras_default=keras_default, input_names=input_names)
        names = config.fetch_names
        self.ranks: dict[str, int] = {}
        self.specs = self._trace(config, names, element_spec)
        replica_fn = self.tower.replica_fn(names, {})
        self.snapshot = None
        if config.asynchronous:
            if self.multi_worker:
                raise ValueError(
                    "asynchronous=True cannot validate across several workers: the validation's "
                    "collectives would interleave with training's. Validate synchronously "
                    "(asynchronous=False) or evaluate checkpoints beside training with SidecarEvaluator.")
            require_model_for_snapshot(model)
            self.snapshot = config.snapshot if config.snapshot is not None else Snapshot(model, self.strategy)
            replica_fn = scoped(replica_fn, self.snapshot)
        step_strategy, device = self.strategy, None
        if self.mode == "whole" and not self.multi_worker and len(self.strategy.extended.worker_devices) == 1:
            # One replica (device=..., or a data-parallel runner on one device):
            # the plain loop on that device, without per-replica machinery.
            step_strategy, device = None, self.strategy.extended.worker_devices[0]
        # Rounds per call: the user's cap, or automatic (paced by time and
        # bytes; across workers every call has this size, so keep it modest).
        self.max_rounds = config.steps_per_execution or (64 if self.multi_worker else 1024)
        self.step = make_step(replica_fn, self.specs, element_spec, step_strategy,
                              "single" if step_strategy is None else self.mode, self.max_rounds,
                              self.multi_worker, device=device, queued=self._queued(config))
        self._config = config
        self._set_fetches(names, list(self.specs))
        self._pace = 1  # rounds of a pass's first call

    def _queued(self, config: EngineConfig) -> bool:
        """A Python input reaches the step through a queue, except across
        workers (each worker takes its shard of the dataset)."""
        return config.input.queued and not self.multi_worker

    def _mode(self, config: EngineConfig) -> tuple[str, bool]:
        strategy = self.strategy
        if strategy is None:
            return "single", False
        if config.whole_batches or isinstance(strategy, (tf.distribute.OneDeviceStrategy,
                                                            tf.distribute.MultiWorkerMirroredStrategy)):
            return "whole", spans_workers(strategy)
        return "split", False

    def _trace(self, config: EngineConfig, names: Sequence[str], element_spec) -> dict[str, tf.TensorSpec]:
        """One trace on the input's structure: checks every fetch name
        (before any training step) and records the outputs' specs."""
        fn = self.tower.replica_fn(names, self.ranks)
        try:
            concrete = tf.function(fn, autograph=False).get_concrete_function(element_spec)
        except UnknownFetchError as e:
            raise named_fetch_error(e, config) from None
        specs = {k: tf.TensorSpec.from_tensor(v) for k, v in concrete.structured_outputs.items()}
        self.ranks[NUM_SAMPLES] = 0
        for k, spec in specs.items():
            self.ranks.setdefault(k, spec.shape.rank)
            if spec.shape.rank is None:
                raise ValueError(f"Fetched tensor {k!r} has an unknown rank; give it a static rank in "
                                 "the tower (e.g. tf.reshape or tf.ensure_shape).")
        return specs

    @property
    def tracing_count(self) -> int:
        return self.step.experimental_get_tracing_count()

    @property
    def is_chief(self) -> bool:
        return is_chief(self.strategy)

    def can_block(self, names: Sequence[str]) -> bool:
        """Whether these fetches (with their exact pairs and the sample
        weights) can travel as one block per step call: none is a scalar per
        batch and all have static non-batch dimensions."""
        wanted = self.wanted(names)
        return all(self.ranks.get(n, 0) >= 1 and static_inner(self.specs[n]) for n in wanted)

    def blocks(self, input: Any = None):
        """A generator of ``(dataset batches, Chunk)``, one per step call, in
        dataset order, over ``input`` (an input of this binding's structure;
        by default the configuration's); close it to stop early. (Under ``split`` mode with a
        per-batch scalar fetch, each replica slice is one batch of the chunk.)"""
        input = self._config.input if input is None else input
        feed = input.open(queued=self._queued(self._config))
        shard = None
        if self.multi_worker:
            local = len(self.strategy.extended.worker_devices)
            shard = lambda ds: shard_for_worker(ds, self.strategy.num_replicas_in_sync, local,  # noqa: E731
                                                _worker_index(self.strategy))
        source = feed.source(shard)
        # A pass starts at the pace the previous one reached (no ramp from one round).
        pacer = Pacer(self.max_rounds, adaptive=not self.multi_worker, start=self._pace)
        per_round = 1 if self.strategy is None else self.strategy.num_replicas_in_sync
        merge = self.mode == "split" and all(r >= 1 for n, r in self.ranks.items() if n != NUM_SAMPLES)

        def call():
            asked = pacer.limit
            start = time.perf_counter()
            rounds, valid, values, sizes, shapes = self.step(source, tf.constant(asked, tf.int32))
            rounds = int(rounds)
            if rounds < asked:  # the input ended (or its Python iterator failed)
                feed.check()
            if not rounds:
                return None, True
            valid = valid.numpy()
            values = {n: v.numpy() for n, v in values.items()}
            pacer.observe(asked, rounds, time.perf_counter() - start, sum(v.nbytes for v in values.values()))
            if rounds == asked:  # a full call: its pace holds for the next pass too
                self._pace = pacer.limit
            chunk = Chunk(valid, values, sizes.numpy(), {n: v.numpy() for n, v in shapes.items()},
                          self.specs, self.ranks, per_round, merge)
            count = rounds if self.mode == "split" else int(valid.sum())
            return (count, chunk), rounds < asked

        yield from pipelined(call, background=self._config.pipeline,
                             shutdown_timeout=self._config.shutdown_timeout, on_stop=feed.close)
