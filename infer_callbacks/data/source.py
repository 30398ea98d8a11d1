"""Turn what the user passes as validation input into a sized, re-iterable,
prefetched ``tf.data.Dataset``.

Accepted inputs:

* a ``tf.data.Dataset`` (used as is, plus a prefetch);
* a tensorpack-style DataFlow: an object with ``__iter__`` yielding batches,
  an optional ``__len__`` and an optional ``reset_state()`` (called exactly
  once, before the first iteration);
* any re-iterable of batches (a list of tuples of arrays, ...), where each
  batch is an array, a tuple/list of arrays or a dict of arrays;
* a zero-argument function returning one of the above (called at every run);
* Keras-style arrays, a *tuple* ``(x, y)`` or ``(x, y, sample_weight)``,
  batched by ``batch_size`` (see ``arrays.py``);
* a ``torch.utils.data.DataLoader``, or any of the above holding torch
  tensors: they become numpy (see ``torch_loader.py``).

One-shot iterators (generators, ``iter(...)`` results) are refused: the runner
needs to start again from the first batch at every run.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from infer_callbacks._util.copying import copy_callback
from infer_callbacks.data.arrays import ArrayBatches, array_dataset, check_batch_size, is_array_data
from infer_callbacks.data.batches import check_like_first, describe, is_one_shot, spec_of, to_structure
from infer_callbacks.data.dataflow import DataFlowInput
from infer_callbacks.data.queue_feed import Feed
from infer_callbacks.data.torch_loader import is_torch_tensor, torch_arrays_to_numpy

__all__ = ["InputSource"]


class _Static:
    """A ``tf.data`` input's run: the dataset itself."""

    def __init__(self, dataset: tf.data.Dataset):
        self.dataset = dataset

    def source(self, transform=None):
        return iter(self.dataset if transform is None else transform(self.dataset))

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


class InputSource:
    """A validation input as a re-iterable, prefetched ``tf.data.Dataset``.

    Args:
        source: the user's input (see the module docstring).
        prefetch: batches to prefetch; ``None`` lets tf.data tune it.
        batch_size: the batch size of Keras-style ``(x, y[, sample_weight])``
            arrays (default 32); refused with any other input.
        limit_batches: validate on the same first ``N`` batches every run
            (an int), or on that fraction of the batches (a float in
            ``(0, 1]``, at least one batch; needs an input of known length).

    Attributes:
        dataset: the ``tf.data.Dataset`` to iterate, once per run.
        arrays: Keras-style arrays as an :class:`ArrayBatches` (read as
            views by the JAX engine), else ``None``.
        size: the number of batches per run, or ``None`` when unknown.
    """

    def __init__(self, source: Any, *, prefetch: int | None = None, batch_size: int | None = None,
                 limit_batches: int | float | None = None):
        if isinstance(source, DataFlowInput):
            source = source.dataflow
        source = torch_arrays_to_numpy(source)
        check_batch_size(batch_size, source)
        arrays = source if is_array_data(source) else None
        if arrays is not None:
            source = array_dataset(source, batch_size)
        self._source = source
        self._factory: Callable[[], Any] | None = None
        self._reset_done = False
        self._reset_lock = threading.Lock()
        self.description = describe(source)
        self.reset_counter()
        prefetch_n = self._prefetch = tf.data.AUTOTUNE if prefetch is None else int(prefetch)
        self._signature = None
        self._capacity = 8 if prefetch is None else max(1, int(prefetch))

        self.limit: int | None = None
        if isinstance(source, tf.data.Dataset):
            self._check_cardinality(source)
            card = int(source.cardinality())
            self.size = card if card >= 0 else None
            self._set_limit(limit_batches)
            self.dataset = (source if self.limit is None else source.take(self.limit)).prefetch(prefetch_n)
            self.arrays = ArrayBatches(arrays, batch_size, self.limit) if arrays is not None else None
            return
        if isinstance(source, (tf.Tensor, np.ndarray, str, bytes)) or is_torch_tensor(source):
            raise TypeError(
                f"`input` must be a tf.data.Dataset, a DataFlow or a re-iterable "
                f"of batches. Received a single {describe(source)}; wrap arrays "
                "as tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)."
            )
        if is_one_shot(source):
            raise TypeError(
                "`input` is a one-shot iterator "
                f"({describe(source)}): it would be exhausted after the first "
                "validation run. Pass a re-iterable (a list, a tf.data.Dataset, "
                "a DataFlow) or a zero-argument function returning a fresh "
                "iterator, e.g. `lambda: my_generator()`."
            )
        if callable(source) and not hasattr(source, "__iter__"):
            self._factory = source
        elif not hasattr(source, "__iter__"):
            raise TypeError(
                f"`input` must be a tf.data.Dataset, a DataFlow, a re-iterable of "
                f"batches or a function returning one. Received: {source!r}"
            )
        first = self._first_batch()
        structure = to_structure(first)
        signature = tf.nest.map_structure(spec_of, structure)
        self.size = self._len()
        self._set_limit(limit_batches)
        self._signature = signature
        self.arrays = None
        self.dataset = tf.data.Dataset.from_generator(
            self._generate, output_signature=signature
        ).prefetch(prefetch_n)

    def __deepcopy__(self, memo: dict) -> "InputSource":
        """The same input for another runner (keras-tuner copies callbacks per
        trial): the user's dataset, DataFlow or function is shared, never
        copied (a ``tf.data.Dataset`` holds a graph); the batch counter and
        the lock are the copy's own, and a Python input gets a dataset that
        feeds from the copy."""
        new = copy_callback(self, memo, share=("_source", "_factory", "_signature", "dataset", "arrays"),
                            fresh={"_reset_lock": threading.Lock})
        new.reset_counter()
        if self._signature is not None:
            new.dataset = tf.data.Dataset.from_generator(
                new._generate, output_signature=self._signature).prefetch(self._prefetch)
        return new

    def _set_limit(self, limit: int | float | None) -> None:
        """``limit_batches``: checked, as a number of batches (``self.limit``)."""
        if limit is None:
            return
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0 \
                or (isinstance(limit, float) and limit > 1):
            raise ValueError("`limit_batches` must be a positive int (a number of batches) or a float in "
                             f"(0, 1] (a fraction of the set). Received: limit_batches={limit!r}")
        if isinstance(limit, float):
            if self.size is None:
                raise ValueError(f"`limit_batches={limit}` is a fraction, but the validation input "
                                 f"({self.description}) does not tell its length. Pass a number of "
                                 "batches instead, e.g. limit_batches=50.")
            limit = max(1, int(limit * self.size))
        self.limit = int(limit)
        if self.size is not None:
            self.size = min(self.size, self.limit)

    @staticmethod
    def _check_cardinality(ds: tf.data.Dataset) -> None:
        card = int(ds.cardinality())
        if card == tf.data.INFINITE_CARDINALITY:
            raise ValueError(
                "The validation dataset is infinite (cardinality INFINITE, e.g. "
                "after .repeat()), so a validation run would never end. Remove "
                "the .repeat() or use .take(num_batches)."
            )
        if card == 0:
            raise ValueError(
                "The validation dataset is empty (cardinality 0). Pass a "
                "dataset with at least one batch."
            )

    def _len(self) -> int | None:
        if self._factory is not None:
            return None
        try:
            n = len(self._source)
        except (TypeError, NotImplementedError):
            return None
        return int(n)

    def _iterable(self) -> Any:
        if self._factory is None:
            with self._reset_lock:
                if not self._reset_done:
                    reset = getattr(self._source, "reset_state", None)
                    if callable(reset):
                        reset()
                    self._reset_done = True
            return self._source
        made = self._factory()
        if isinstance(made, tf.data.Dataset):
            raise TypeError(
                "The input function returned a tf.data.Dataset; pass the "
                "dataset itself as `input`."
            )
        if not hasattr(made, "__iter__"):
            raise TypeError(
                f"The input function must return an iterable of batches. It "
                f"returned {made!r}."
            )
        return made

    def _first_batch(self) -> Any:
        iterator = iter(self._iterable())
        try:
            return next(iterator)
        except StopIteration:
            raise ValueError(
                f"The validation input ({self.description}) yielded no batch. "
                "Pass a non-empty validation set."
            ) from None
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                close()

    @property
    def queued(self) -> bool:
        """Whether :meth:`open` feeds runs through a queue (a Python input)."""
        return self._signature is not None

    def open(self, queued: bool = True) -> Any:
        """One run's input: ``.source(transform)`` for the step (an iterator
        of ``transform(dataset)``, or a queue handle), ``.check()`` after it
        ends (raises the error a Python input raised, if any) and
        ``.close()``. A Python input is fed by a producer thread through a
        TensorFlow queue (:class:`~infer_callbacks.data.queue_feed.Feed`) when
        ``queued``, else through :attr:`dataset`."""
        if not (queued and self.queued):
            return _Static(self.dataset)
        return Feed(self._generate, self._signature, capacity=self._capacity,
                    description=self.description)

    def reset_counter(self) -> None:
        """Start counting produced batches (for error messages)."""
        self.produced = 0
        self.failed_batch: int | None = None

    def _generate(self):
        self.reset_counter()
        iterator = iter(self._iterable())
        while self.limit is None or self.produced < self.limit:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except BaseException:
                self.failed_batch = self.produced + 1
                raise
            self.produced += 1
            structure = to_structure(batch)
            try:
                check_like_first(structure, self._signature, self.produced, self.description)
            except ValueError:
                self.failed_batch = self.produced
                raise
            yield structure
