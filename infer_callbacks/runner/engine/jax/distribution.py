"""What a Keras distribution means for ``InferenceRunner`` under the JAX
backend, read through Keras's public API (``keras.distribution``).

``keras.distribution.DataParallel`` is Keras's counterpart of a
``MirroredStrategy``: the variables replicated on every device of its mesh,
each global batch split along its batch dimension. ``InferenceRunner``
follows it (as it follows a ``MirroredStrategy`` model on TensorFlow): a
:class:`BatchSplit` tells the engine the mesh, the batch axis and how Keras
lays out the variables and the data; ``split_step.JaxSplitStep`` runs
it. Any other distribution (``ModelParallel``, a subclass of one's own) is
refused at setup, naming it and what is supported. A ``DataParallel`` that
spans several JAX processes is not split per batch: each process validates
whole batches on its own devices (:func:`process_devices`, ``host_processes.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import keras
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["BatchSplit", "batch_split", "current_distribution", "process_devices"]


def current_distribution() -> Any:
    """Keras's distribution in effect (``set_distribution`` or a ``scope()``), or ``None``."""
    return keras.distribution.distribution()


@dataclasses.dataclass(frozen=True)
class BatchSplit:
    """A ``DataParallel`` distribution in the engine's terms.

    Attributes:
        distribution: the Keras distribution.
        mesh: its device mesh as a ``jax.sharding.Mesh``.
        batch_axis: the mesh axis the batch dimension is split along.
    """

    distribution: Any
    mesh: Mesh
    batch_axis: str

    @property
    def devices(self) -> list:
        return list(self.mesh.devices.flat)

    @property
    def size(self) -> int:
        """How many parts a batch is split into (the padded batch is a multiple of it)."""
        return int(self.mesh.shape[self.batch_axis])

    def value_shardings(self, variables: Sequence) -> list[NamedSharding]:
        """Each variable's sharding as Keras lays it out (``DataParallel``: replicated)."""
        out = []
        for v in variables:
            layout = self.distribution.get_variable_layout(v)
            axes = tuple(getattr(layout, "axes", None) or ())
            out.append(NamedSharding(self.mesh, P(*axes)))
        return out

    def data_sharding(self, batch_shape: tuple) -> NamedSharding:
        """The sharding of a ``[K, B, ...]`` stack of batches of ``batch_shape``:
        ``B`` split as Keras's data layout says, the ``K`` slots not."""
        axes = tuple(self.distribution.get_data_layout(batch_shape).axes)
        return NamedSharding(self.mesh, P(None, *axes))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())


def _describe(distribution: Any) -> str:
    try:
        return repr(distribution)
    except Exception:  # a user's subclass with a broken __repr__
        return type(distribution).__name__


def process_devices(distribution: Any) -> list:
    """This process's devices of a ``keras.distribution.DataParallel`` that
    spans several JAX processes (each validates whole batches on its own
    devices: ``host_processes.py``).

    Raises:
        ValueError: ``distribution`` is another kind; the message names it.
    """
    _check_kind(distribution)
    here = jax.process_index()
    return [d for d in distribution.device_mesh.devices.flat if d.process_index == here]


def batch_split(distribution: Any) -> BatchSplit:
    """The :class:`BatchSplit` of a ``keras.distribution.DataParallel``.

    Raises:
        ValueError: ``distribution`` is another kind (``ModelParallel``, ...);
            the message names it and what is supported.
    """
    _check_kind(distribution)
    mesh = distribution.device_mesh
    axis = distribution.batch_dim_name
    if axis not in mesh.axis_names:
        raise ValueError(f"The DataParallel distribution's batch dimension {axis!r} is not an axis of its "
                         f"mesh {list(mesh.axis_names)}.")
    return BatchSplit(distribution, Mesh(mesh.devices, tuple(mesh.axis_names)), axis)


def _check_kind(distribution: Any) -> None:
    if type(distribution) is not keras.distribution.DataParallel:
        raise ValueError(
            f"InferenceRunner under Keras's JAX backend follows keras.distribution.DataParallel "
            f"(each batch split across its devices, the variables replicated), but the distribution "
            f"in effect is {_describe(distribution)} ({type(distribution).__module__}."
            f"{type(distribution).__name__}), which it does not support. Supported: no distribution, "
            f"or keras.distribution.DataParallel(devices=...). To validate this model anyway, pass "
            f"InferenceRunner(..., device='/cpu:0') (its variables gathered on one device) or use "
            f"DataParallelInferenceRunner(..., gpus=[...]) (whole batches per device).")
