"""``InferenceRunner`` and ``DataParallelInferenceRunner``: when to run, the
loop, the progress bar, dispatch to inferencers, and results into ``logs``.

The loop runs up to ``steps_per_execution`` batches per ``tf.function`` call (each
replica's outputs of each batch kept apart), then hands every batch's numpy
values to the inferencers in order on the host. Inferencers never see
TensorFlow.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import warnings
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from .inferencer import Inferencer
from .input import InputSource
from .tower import TowerSpec, UnknownFetchError, _canonical_device, keras_tower_func, resolve_strategy

__all__ = ["InferenceRunner", "DataParallelInferenceRunner"]

_NUM_SAMPLES = "__num_samples__"
_CALL_SECONDS = 0.25  # target duration of one validation tf.function call


def _check_inferencers(infs: Any) -> list[Inferencer]:
    if isinstance(infs, Inferencer):
        infs = [infs]
    if not isinstance(infs, (list, tuple)) or not infs:
        raise ValueError(
            "`infs` must be an Inferencer or a non-empty list of Inferencers. "
            f"Received: {infs!r}"
        )
    for inf in infs:
        if not isinstance(inf, Inferencer):
            raise TypeError(
                "Every element of `infs` must be an infer_callbacks.Inferencer "
                f"(e.g. ScalarStats('loss')). Received: {inf!r} of type {type(inf).__name__}."
            )
    return list(infs)


def _check_result_clash(infs: Sequence[Inferencer]) -> None:
    owner: dict[str, Inferencer] = {}
    for inf in infs:
        for key in inf.result_names() or []:
            if key in owner:
                raise ValueError(
                    f"Two inferencers report the same key {key!r}: {owner[key]!r} and "
                    f"{inf!r}. Give one of them another prefix or summary name."
                )
            owner[key] = inf


_CONSUMERS = (
    keras.callbacks.EarlyStopping,
    keras.callbacks.ModelCheckpoint,
    keras.callbacks.CSVLogger,
    keras.callbacks.ReduceLROnPlateau,
    keras.callbacks.TensorBoard,
)


def _enclosing_callback_list(callback: keras.callbacks.Callback):
    """The ``CallbackList`` currently calling ``callback``, if found."""
    frame = sys._getframe(2)
    for _ in range(6):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, keras.callbacks.CallbackList) and any(
            c is callback for c in owner.callbacks
        ):
            return owner
        frame = frame.f_back
    return None


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return
        except queue.Full:
            pass


def _spans_workers(strategy: tf.distribute.Strategy | None) -> bool:
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._num_workers > 1)


def _replica_parts(strategy: tf.distribute.Strategy, value) -> list:
    """One tensor per replica of ``strategy``, in replica order, all
    reachable from this host (called in cross-replica context inside the
    validation ``tf.function``). Under a ``MultiWorkerMirroredStrategy`` with
    several workers, the replicas of every worker (gathered)."""
    local = list(strategy.experimental_local_results(value))
    if not _spans_workers(strategy):
        return local
    return _gather_across_workers(strategy, value, local)


# Elements per collective when gathering across workers. Every collective op
# inside the validation loop must see the same shape at every iteration: TF
# resolves a collective instance once per op (its instance key is fixed when
# the function is traced), so a gather whose size varies from batch to batch
# (e.g. a partial last batch) fails with "Shape mismatch in the collective
# instance". Values are therefore sent as fixed-size chunks.
_GATHER_CHUNK = 16384
_GATHER_CAST = {tf.bool: tf.int32, tf.int8: tf.int32, tf.uint8: tf.int32, tf.int16: tf.int32,
                tf.uint16: tf.int32, tf.bfloat16: tf.float32}


def _gather_across_workers(strategy: tf.distribute.Strategy, value, local: list) -> list:
    """Every replica's part of ``value`` (a per-replica tensor, batch first;
    ``local`` its local results), from all workers, with constant-shape
    collectives only: one gather of ``[rows, size]`` per replica, then the
    flattened values, zero-padded to a whole number of ``_GATHER_CHUNK``
    chunks, one chunk per gather; each part is cut back to its size and
    shape (inner dimensions as on this worker)."""
    dtype = local[0].dtype
    if dtype == tf.string:
        raise ValueError("String tensors cannot be gathered across workers; fetch numbers instead.")
    wire = _GATHER_CAST.get(dtype, dtype)
    inner = local[0].shape[1:]
    inner_dynamic = tf.shape(local[0])[1:]
    chunk = _GATHER_CHUNK
    num_replicas = strategy.num_replicas_in_sync

    def meta_fn(v):
        return tf.reshape(tf.stack([tf.shape(v, out_type=tf.int64)[0],
                                    tf.size(v, out_type=tf.int64)]), [1, 2])

    meta = strategy.gather(strategy.run(meta_fn, args=(value,)), axis=0)  # [R, 2], constant shape
    sizes = meta[:, 1]
    num_chunks = (tf.reduce_max(sizes) + chunk - 1) // chunk

    def flat_fn(v):
        flat = tf.cast(tf.reshape(v, [-1]), wire)
        return tf.pad(flat, [[0, num_chunks * chunk - tf.size(flat, out_type=tf.int64)]])

    flat = strategy.run(flat_fn, args=(value,))

    def body(k, ta):
        piece = strategy.run(lambda f: tf.reshape(f[k * chunk:(k + 1) * chunk], [1, chunk]), args=(flat,))
        return k + 1, ta.write(tf.cast(k, tf.int32), strategy.gather(piece, axis=0))  # [R, chunk]

    ta = tf.TensorArray(wire, size=0, dynamic_size=True, element_shape=[num_replicas, chunk])
    _, ta = tf.while_loop(lambda k, ta: k < num_chunks, body, [tf.constant(0, tf.int64), ta],
                          parallel_iterations=1)
    gathered = tf.cond(num_chunks > 0,
                       lambda: tf.reshape(tf.transpose(ta.stack(), [1, 0, 2]), [num_replicas, -1]),
                       lambda: tf.zeros([num_replicas, 0], wire))
    parts = []
    for r in range(num_replicas):
        part = tf.reshape(gathered[r, :sizes[r]], tf.concat([[meta[r, 0]], tf.cast(inner_dynamic, tf.int64)], 0))
        part = tf.cast(part, dtype)
        part.set_shape(tf.TensorShape([None]).concatenate(inner))
        parts.append(part)
    return parts  # in the collective group's order


class InferenceRunner(keras.callbacks.Callback):
    """Runs inferencers over a validation set at the end of every epoch.

    Results go into the epoch's ``logs`` (so ``History``, ``EarlyStopping``,
    ``ModelCheckpoint``, ``CSVLogger`` and :class:`Monitors` see them) and into
    :attr:`last_results`.

    Args:
        input: a ``tf.data.Dataset``, a tensorpack-style DataFlow, a
            re-iterable of batches, or a function returning an iterable.
        infs: an :class:`Inferencer` or a list of them.
        tower_func: ``tower_func(*batch) -> dict[str, Tensor]``; by default,
            the Keras model's own tower (outputs, ``loss``, ``label``,
            ``wrong-top1``...).
        device: run on this one device (``'/cpu:0'``, ``'/gpu:1'``); by
            default, on the model's own strategy or TensorFlow's placement.
        input_names: names of the positional batch elements, when
            ``tower_func``'s parameter names are not the ones to fetch.
        steps_per_execution: the most batches run per ``tf.function`` call
            (fewer on a slow model, so that a call takes about a quarter of
            a second and the progress bar moves); the inferencers still see
            one batch at a time, in order.
        pipeline: run the ``tf.function`` calls in a background thread so
            the device computes the next batches while the host hands the
            previous ones to the inferencers.
        on_nonfinite: what to do when a result is NaN or infinite: ``'warn'``
            (the inferencer warns naming the tensor, the value is reported
            and training goes on) or ``'raise'`` (``FloatingPointError``).
        verbose: show a progress bar (only on a terminal, and not when
            ``fit(verbose=0)``).
        prefetch: batches to prefetch; ``None`` lets tf.data tune it.

    Example:

    ```python
    model.fit(train_ds, epochs=10, callbacks=[
        InferenceRunner(val_ds, [ScalarStats("loss"), ClassificationError()]),
        keras.callbacks.EarlyStopping(monitor="validation_error", mode="min", patience=2),
    ])
    ```
    """

    def __init__(self, input: Any, infs: Inferencer | Sequence[Inferencer],
                 tower_func: Callable[..., Any] | None = None, device: str | None = None, *,
                 input_names: Sequence[str] | None = None, steps_per_execution: int = 64,
                 verbose: bool = True, prefetch: int | None = None, pipeline: bool = True,
                 on_nonfinite: str = "warn"):
        super().__init__()
        self.infs = _check_inferencers(infs)
        _check_result_clash(self.infs)
        for inf in self.infs:
            inf.get_fetches()  # validates the list early
        if not isinstance(steps_per_execution, int) or steps_per_execution < 1:
            raise ValueError(
                "`steps_per_execution` must be a positive integer. "
                f"Received: steps_per_execution={steps_per_execution!r}"
            )
        if tower_func is not None and not callable(tower_func):
            raise TypeError(f"`tower_func` must be callable. Received: {tower_func!r}")
        if device is not None:
            device = _canonical_device(device)
        self.input = InputSource(input, prefetch=prefetch)
        self.tower_func = tower_func
        self.device = device
        self.input_names = list(input_names) if input_names is not None else None
        self.steps_per_execution = steps_per_execution
        self.verbose = verbose
        self.pipeline = bool(pipeline)
        if on_nonfinite not in ("warn", "raise"):
            raise ValueError(
                "`on_nonfinite` must be 'warn' (report NaN/inf and go on) or 'raise'. "
                f"Received: on_nonfinite={on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.shutdown_timeout = 2.0
        self.last_results: dict[str, float] = {}
        self.last_images: dict[str, np.ndarray] = {}
        self.run_at_epoch_end = True
        self._strategy: tf.distribute.Strategy | None = None
        self._step = None
        self._ready = False
        self._setup_key = None
        self._runs = 0

    # -- Keras hooks --------------------------------------------------------

    def on_train_begin(self, logs=None) -> None:
        self._move_before_consumers()
        self.setup()

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.run_at_epoch_end:
            results = self.trigger()
            if logs is not None:
                logs.update(results)

    # -- public -------------------------------------------------------------

    def setup(self) -> None:
        """Choose devices, trace the tower on the input's structure and check
        every fetch name. Called by ``on_train_begin``; a second call with the
        same model and devices keeps the traced step (no retrace per ``fit``)."""
        strategy = self._choose_strategy()
        key = (id(self.model), id(strategy), id(self.tower_func))
        if self._ready and key == self._setup_key:
            return
        self._strategy = strategy
        dataset = self.input.dataset
        if self._strategy is not None:
            self._dist_dataset = self._strategy.experimental_distribute_dataset(dataset)
            element_spec = self._dist_dataset.element_spec
            element_spec = tf.nest.map_structure(
                lambda s: getattr(s, "_value_specs", (s,))[0], element_spec)
        else:
            self._dist_dataset = dataset
            element_spec = dataset.element_spec
        if self.tower_func is None:
            if self.model is None:
                raise ValueError(
                    "InferenceRunner has no model and no `tower_func`. Use it in "
                    "`model.fit(callbacks=[...])` or pass `tower_func`."
                )
            tower_func, keras_default = keras_tower_func(self.model), True
        else:
            tower_func, keras_default = self.tower_func, False
        self._tower = TowerSpec(tower_func, element_spec, keras_default=keras_default,
                                input_names=self.input_names)
        self._fetch_names = list(dict.fromkeys(n for inf in self.infs for n in inf.get_fetches()))
        self._plan = [(inf, [self._fetch_names.index(n) for n in inf.get_fetches()]) for inf in self.infs]
        self._ranks: dict[str, int] = {}
        self._specs = self._output_specs(element_spec)
        self._step = self._make_step()
        self._ready = True
        self._setup_key = key

    def trigger(self) -> dict[str, float]:
        """Run one validation pass now and return its results."""
        if not self._ready:
            self.setup()
        results = self._run()
        self.last_results = results
        return results

    @property
    def tracing_count(self) -> int:
        """How many times the validation step was traced (for tests)."""
        return 0 if self._step is None else self._step.experimental_get_tracing_count()

    # -- internals ----------------------------------------------------------

    def _choose_strategy(self) -> tf.distribute.Strategy | None:
        if self.device is not None:
            if getattr(self, "_device_strategy", None) is None:
                self._device_strategy = resolve_strategy(self.model, self.device)
            return self._device_strategy
        return resolve_strategy(self.model, self.device)

    def _move_before_consumers(self) -> None:
        """Make callback order not matter: move this runner before the
        callbacks that read ``logs`` at epoch end (EarlyStopping, Monitors,
        ...). Safe during ``CallbackList.on_train_begin``'s iteration: the
        callbacks moved right have already been called."""
        from .monitors import Monitors
        from .trigger import PeriodicTrigger

        callback_list = _enclosing_callback_list(self)
        if callback_list is None:
            return
        cbs = callback_list.callbacks
        me = next((c for c in cbs if c is self or getattr(c, "runner", None) is self), None)
        if me is None:
            return
        index = cbs.index(me)
        first = next((i for i, c in enumerate(cbs[:index])
                      if isinstance(c, _CONSUMERS + (Monitors,))
                      and not isinstance(c, (InferenceRunner, PeriodicTrigger))), None)
        if first is not None:
            cbs.pop(index)
            cbs.insert(first, me)

    def _output_specs(self, element_spec) -> dict[str, tf.TensorSpec]:
        """Trace the tower once on the input's structure: checks every fetch
        name (raising before any training step) and records output specs."""
        fn = self._tower.replica_fn(self._fetch_names, self._ranks)
        try:
            concrete = tf.function(fn, autograph=False).get_concrete_function(element_spec)
        except UnknownFetchError as e:
            users = [inf for inf in self.infs if e.name in inf.get_fetches()]
            raise UnknownFetchError(e.name, f"{e} Requested by {users[0]!r}." if users else str(e)) from None
        return {k: tf.TensorSpec.from_tensor(v) for k, v in concrete.structured_outputs.items()}

    def _make_step(self):
        strategy = self._strategy
        names = self._fetch_names + [_NUM_SAMPLES]
        specs = self._specs
        replica = self._tower.replica_fn(self._fetch_names, {})
        k = self.steps_per_execution

        def empty(spec: tf.TensorSpec):
            if spec.shape.rank is None:
                raise ValueError(f"Fetched tensor of unknown rank: {spec}")
            return tf.zeros([0] + [d or 0 for d in spec.shape.as_list()[1:]], spec.dtype)

        def run_one(batch):
            if strategy is None:
                out = replica(batch)
                return [[out[n]] for n in names]
            out = strategy.run(replica, args=(batch,))
            return [_replica_parts(strategy, out[n]) for n in names]

        @tf.function
        def step(iterator, limit):
            values = [tf.TensorArray(specs[n].dtype, size=0, dynamic_size=True, infer_shape=False,
                                     element_shape=tf.TensorShape([None]).concatenate(specs[n].shape[1:]))
                      for n in names]
            lengths = [tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False,
                                      element_shape=tf.TensorShape([None])) for _ in names]
            count = tf.constant(0)
            for _ in tf.range(tf.minimum(limit, k)):
                optional = iterator.get_next_as_optional()
                if not optional.has_value():
                    break
                per_name = run_one(optional.get_value())
                values = [ta.write(count, tf.concat(parts, 0) if len(parts) > 1 else parts[0])
                          for ta, parts in zip(values, per_name)]
                lengths = [ta.write(count, tf.stack([tf.shape(p)[0] for p in parts]))
                           for ta, parts in zip(lengths, per_name)]
                count += 1
            out_values = []
            out_lengths = []
            for i, n in enumerate(names):
                out_values.append(tf.cond(count > 0, values[i].concat, lambda n=n: empty(specs[n])))
                out_lengths.append(tf.cond(count > 0, lengths[i].concat, lambda: tf.zeros([0], tf.int32)))
            return count, out_values, out_lengths

        return step

    def _progress(self):
        quiet = not self.verbose or (self.params or {}).get("verbose", 1) == 0
        return tqdm(total=self.input.size, desc="Inference", unit="batch", leave=False,
                    disable=True if quiet else None, dynamic_ncols=True)

    def _chunks(self, iterator):
        """Yield ``(count, values, lengths)`` host arrays, one item per
        ``tf.function`` call. With ``pipeline=True`` the calls run in a
        background thread, so the device works on the next chunk while the
        host dispatches this one to the inferencers."""
        k = self.steps_per_execution
        # Batches per call adapt to the model's speed: the first call runs
        # one batch, later calls as many as fit in about `_CALL_SECONDS`
        # (at most double the last call's, and at most
        # `steps_per_execution`), so the progress bar keeps moving
        # on a slow model while a fast one gets long calls. `limit` is a
        # tensor: changing it does not retrace. Across several workers every
        # worker must run the same calls (collectives inside), so there the
        # limit stays fixed instead of following each worker's own clock.
        adaptive = not _spans_workers(self._strategy)
        limit = 1 if adaptive else k

        def call():
            nonlocal limit
            asked = limit
            start = time.perf_counter()
            count, values, lengths = self._step(iterator, tf.constant(asked, tf.int32))
            count = int(count)
            item = (count, [v.numpy() for v in values], [ln.numpy() for ln in lengths])
            if count and adaptive:
                per_batch = (time.perf_counter() - start) / count
                # at most double per call: prefetched batches look faster than they are
                limit = int(min(k, 2 * asked, max(1, _CALL_SECONDS / max(per_batch, 1e-9))))
            return item, count < asked

        if not self.pipeline:
            while True:
                item, exhausted = call()
                if item[0]:
                    yield item
                if exhausted:
                    return

        results: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce():
            try:
                while not stop.is_set():
                    item, exhausted = call()
                    _put(results, ("item", item), stop)
                    if exhausted:
                        break
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                _put(results, ("error", e), stop)
            _put(results, ("end", None), stop)

        worker = threading.Thread(target=produce, name="infer_callbacks-step", daemon=True)
        worker.start()
        try:
            while True:
                kind, payload = results.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                if payload[0]:
                    yield payload
        finally:
            stop.set()
            # Unblock a producer waiting on a full queue. A producer stuck in
            # a long tf.function call (e.g. a slow input) is a daemon thread:
            # after a bounded wait we stop waiting for it, so an interrupt or
            # an inferencer's error ends the run promptly.
            deadline = time.monotonic() + self.shutdown_timeout
            while worker.is_alive() and time.monotonic() < deadline:
                try:
                    results.get(timeout=0.05)
                except queue.Empty:
                    pass
                worker.join(timeout=0.05)

    def _run(self) -> dict[str, float]:
        for inf in self.infs:
            inf.before_inference()
        names = self._fetch_names
        scalar = [self._ranks[n] == 0 for n in names]
        iterator = iter(self._dist_dataset)
        batches = 0
        samples = 0
        num_replicas = 1 if self._strategy is None else self._strategy.num_replicas_in_sync
        self.input.reset_counter()
        with self._progress() as bar:
            chunks = self._chunks(iterator)
            try:
                while True:
                    try:
                        item = next(chunks, None)
                    except tf.errors.OpError as e:
                        where = self.input.failed_batch
                        where = (f"batch {where}" if where is not None else
                                 f"one of batches {batches + 1}-{batches + self.steps_per_execution}")
                        e.add_note(f"(raised while running validation {where} of {self.input.description})")
                        raise
                    if item is None:
                        break
                    count, values, lengths = item
                    num_samples = values[-1]
                    offsets = [np.concatenate([[0], np.cumsum(ln)]) for ln in lengths]
                    for j in range(count * num_replicas):
                        ns = int(num_samples[j])
                        if ns == 0 and num_replicas > 1:
                            continue  # an empty replica slice of a partial batch
                        if ns > 0:
                            samples += ns
                        fetched = []
                        for i in range(len(names)):
                            a, b = offsets[i][j], offsets[i][j + 1]
                            fetched.append(values[i][a] if scalar[i] else values[i][a:b])
                        batch_index = batches + j // num_replicas + 1
                        for inf, idx in self._plan:
                            try:
                                inf.on_fetches([fetched[i] for i in idx], ns if ns >= 0 else None)
                            except Exception as e:
                                e.add_note(f"(raised by inferencer {inf!r} on validation batch {batch_index})")
                                raise
                    batches += count
                    bar.update(count)
            finally:
                chunks.close()  # stops the step thread, also on KeyboardInterrupt
        if batches == 0:
            raise ValueError(
                f"The validation input ({self.input.description}) yielded no batch "
                "in this run. Pass a non-empty, re-iterable validation set."
            )
        if self.input.size is not None and batches != self.input.size:
            warnings.warn(
                f"The validation input ({self.input.description}) reports "
                f"{self.input.size} batches (len) but yielded {batches}; the results "
                f"use the {batches} it yielded. Fix its __len__.", RuntimeWarning, stacklevel=2)
        results: dict[str, float] = {}
        images: dict[str, np.ndarray] = {}
        for inf in self.infs:
            images.update(inf.after_inference_images())
            out = inf.after_inference()
            for key, value in out.items():
                if key in results:
                    raise ValueError(
                        f"Two inferencers report the same key {key!r} (the second is "
                        f"{inf!r}). Give one of them another prefix or summary name.")
                results[key] = value
        if self.on_nonfinite == "raise":
            bad = {k: v for k, v in results.items() if not np.isfinite(v)}
            if bad:
                raise FloatingPointError(
                    f"Validation produced non-finite results {bad} (on_nonfinite='raise'). "
                    "Check the tensors these inferencers fetch, or pass on_nonfinite='warn' "
                    "to report them and go on.")
        self._runs += 1
        self.num_samples_last_run = samples
        self.last_images = images
        if images and self.model is not None:
            # Side channel for Monitors: images do not belong in Keras `logs`
            # (History/CSVLogger/ProgbarLogger expect scalars there).
            published = getattr(self.model, "_infer_callbacks_images", None)
            if published is None:
                # Keras wraps a dict set on a model in a new TrackedDict: read
                # it back, or the first run's images go to an orphan dict.
                self.model._infer_callbacks_images = {}
                published = self.model._infer_callbacks_images
            published.update(images)
        return results


def _gpu_devices(gpus: Any) -> list[str]:
    """The devices ``gpus`` designates, as logical device names, in the
    order given. Raises ``ValueError`` naming the devices that exist when a
    device is missing, ``gpus`` is 0 or empty, or a device is listed twice."""
    available = [d.name for d in tf.config.list_logical_devices()]
    usage = ("Pass an int (the first N GPUs), a list of GPU ids such as [0, 1], or "
             "a list of device strings such as ['/cpu:0', '/cpu:1'].")
    if isinstance(gpus, str):
        gpus = [gpus]
    if isinstance(gpus, (bool, np.bool_)) or not isinstance(gpus, (int, np.integer, list, tuple)):
        raise TypeError(f"`gpus` has the wrong type. {usage} Received: gpus={gpus!r}")
    if isinstance(gpus, (int, np.integer)):
        count = int(gpus)
        if count < 1:
            raise ValueError(
                f"`gpus` must be at least 1. Received: gpus={count}. {usage} "
                f"Available devices: {available}.")
        have = [d.name for d in tf.config.list_logical_devices("GPU")]
        if count > len(have):
            raise ValueError(
                f"`gpus={count}` asks for the first {count} GPUs, but this machine has "
                f"{len(have)}. Available devices: {available}. {usage}")
        gpus = list(range(count))
    gpus = list(gpus)
    if not gpus:
        raise ValueError(f"`gpus` is an empty list. {usage} Available devices: {available}.")
    devices, missing = [], []
    for g in gpus:
        if isinstance(g, str):
            name = g
        elif isinstance(g, (int, np.integer)) and not isinstance(g, (bool, np.bool_)) and g >= 0:
            name = f"/gpu:{int(g)}"
        else:
            raise TypeError(
                f"Every element of `gpus` must be a GPU id (an int >= 0) or a device "
                f"string. Received {g!r} in gpus={gpus!r}.")
        try:
            devices.append(_canonical_device(name))
        except ValueError:
            missing.append(name)
    if missing:
        raise ValueError(
            f"`gpus` names devices that do not exist on this machine: {missing} "
            f"(gpus={gpus!r}). Available devices: {available}.")
    if len(set(devices)) != len(devices):
        raise ValueError(f"`gpus` lists a device twice: gpus={gpus!r} means {devices}.")
    return devices


class DataParallelInferenceRunner(InferenceRunner):
    """An :class:`InferenceRunner` with one tower per device, run together.

    The devices are the replicas of a ``tf.distribute.MirroredStrategy``
    (the model's own strategy when it was built under one over the same
    devices). ``tf.distribute`` splits each batch across the replicas, a
    partial last batch unevenly (some replicas may get no sample); each
    non-empty replica slice reaches every inferencer's ``_on_fetches`` in
    replica order. No sample is padded, dropped or repeated, so the results
    equal the single-device ones up to float round-off.

    A model built outside any strategy is validated as it is: each replica
    reads the variables from the device where they live. A model built under
    a ``MirroredStrategy`` can only run on that strategy's devices (its
    variables are mirrored there); for it, plain :class:`InferenceRunner`
    already uses all its replicas.

    Args:
        input: as for :class:`InferenceRunner`.
        infs: an :class:`Inferencer` or a list of them.
        gpus: an int (the first N GPUs), a list of GPU ids, or a list of
            device strings such as ``['/cpu:0', '/cpu:1']``. Checked at
            construction: a missing device raises ``ValueError`` listing the
            available ones.
        tower_func: as for :class:`InferenceRunner`.
        **kwargs: the keyword-only arguments of :class:`InferenceRunner`.

    Example:

    ```python
    model.fit(train_ds, epochs=10, callbacks=[
        DataParallelInferenceRunner(val_ds, [ScalarStats("loss"), ClassificationError()],
                                    gpus=[0, 1]),
    ])
    ```
    """

    def __init__(self, input: Any, infs: Inferencer | Sequence[Inferencer], gpus: Any,
                 tower_func: Callable[..., Any] | None = None, **kwargs):
        if "device" in kwargs:
            raise TypeError(
                "DataParallelInferenceRunner takes its devices from `gpus`; `device` "
                "belongs to InferenceRunner (one device). "
                f"Received: device={kwargs['device']!r}")
        self.devices = _gpu_devices(gpus)
        super().__init__(input, infs, tower_func=tower_func, **kwargs)
        self._own_strategy: tf.distribute.Strategy | None = None

    def _choose_strategy(self) -> tf.distribute.Strategy:
        model_strategy = getattr(self.model, "_distribute_strategy", None) if self.model is not None else None
        if model_strategy is not None and not isinstance(model_strategy, tf.distribute.OneDeviceStrategy):
            # Mirrored variables have one copy per replica of *their*
            # strategy; another strategy's replicas cannot read them.
            theirs = []
            for name in model_strategy.extended.worker_devices:
                try:
                    theirs.append(_canonical_device(name))
                except ValueError:
                    theirs.append(name)
            if sorted(theirs) == sorted(self.devices):
                return model_strategy
            raise ValueError(
                f"The model was built under a {type(model_strategy).__name__} over "
                f"{theirs}, so its variables live on those devices only; "
                f"DataParallelInferenceRunner cannot run it on {self.devices}. Pass "
                f"gpus={theirs!r}, or use InferenceRunner, which validates on all "
                "of the model's replicas.")
        if self._own_strategy is None:
            self._own_strategy = tf.distribute.MirroredStrategy(self.devices)
        return self._own_strategy
