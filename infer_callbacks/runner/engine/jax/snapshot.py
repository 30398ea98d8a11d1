"""The weights an asynchronous run validates, under JAX: a device-side copy
of the variables' values.

JAX arrays are immutable, so holding the values of an epoch's end would
seem to need no copy; but Keras's JAX trainer *donates* its state to each
train step (``donate_argnums``), which deletes those very buffers at the
next step. So :meth:`JaxSnapshot.take` copies them on the device (no host
round-trip), once per run, in the layout the step reads (``place``): at
most one extra copy of the weights exists on each device that holds them
(under ``keras.distribution.DataParallel``, replicated: one per device of
the mesh; :attr:`JaxSnapshot.nbytes` counts every device's copy).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np

__all__ = ["JaxSnapshot", "current_values"]


def current_values(model: Any, variables: Sequence) -> list:
    """The variables' current values. Inside ``fit`` the JAX trainer keeps
    the state apart from the variables between epoch ends;
    ``model.jax_state_sync()`` (Keras's hook for callbacks) writes it back
    first, so a run in the middle of an epoch sees the current weights."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()
    return [v.value for v in variables]


class JaxSnapshot:
    """A private copy of ``model.variables``'s values.

    Args:
        model: the model whose variables to copy.
        variables: the variables the tower reads (``model.variables``).
        place: ``place(values)`` puts values where the step reads them.

    Attributes:
        epoch_num, global_step: what the copy holds (``None`` before :meth:`take`).
        values: the copied values (``None`` before :meth:`take`).
    """

    def __init__(self, model: Any, variables: Sequence, place: Callable[[list], list]):
        self._model, self.variables, self._place = model, list(variables), place
        weight_ids = {id(w) for w in getattr(model, "weights", [])}
        self._weights = [i for i, v in enumerate(self.variables) if id(v) in weight_ids]
        self.values: list | None = None
        self.epoch_num: int | None = None
        self.global_step: int | None = None

    def take(self, epoch_num: int, global_step: int) -> None:
        """Copy the model's current weights into the snapshot."""
        self.values = None  # the previous copy is released first
        placed = self._place(current_values(self._model, self.variables))
        self.values = [jax.numpy.array(v, copy=True) for v in placed]
        self.epoch_num, self.global_step = int(epoch_num), int(global_step)

    def numpy(self) -> list[np.ndarray]:
        """The snapshot's values, in ``model.weights`` order."""
        if self.values is None:
            return []
        return [np.asarray(self.values[i]) for i in self._weights]

    @property
    def nbytes(self) -> int:
        """Device memory the copy holds (every device's replica counted)."""
        if self.values is None:
            return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in self.variables)
        return sum(s.data.nbytes for v in self.values for s in v.addressable_shards)
