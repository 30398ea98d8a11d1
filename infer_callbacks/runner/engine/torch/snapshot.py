"""The weights an asynchronous run validates, under PyTorch: a copy of the
variables' tensors on their own device.

Keras's torch trainer updates each variable in place (``copy_`` under
``torch.no_grad``), so holding the tensors of an epoch's end is not enough:
:meth:`TorchSnapshot.take` clones them (on their device, no host round-trip),
once per run, in the runner's thread. The background run reads the clones
through ``keras.StatelessScope`` (``tower.py``), which, like torch's grad
mode, is the background thread's own: training in the main thread goes on
reading and updating the variables. At most one extra copy of the weights
exists (the previous one is released before the next is taken).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from infer_callbacks.runner.engine.torch.step import to_numpy

__all__ = ["TorchSnapshot"]


class TorchSnapshot:
    """A private copy of ``model.variables``'s values.

    Args:
        model: the model whose variables to copy.
        variables: the variables the tower reads (``model.variables``).

    Attributes:
        epoch_num, global_step: what the copy holds (``None`` before :meth:`take`).
        values: the cloned tensors (``None`` before :meth:`take`).
    """

    def __init__(self, model: Any, variables: Sequence):
        self.variables = list(variables)
        weight_ids = {id(w) for w in getattr(model, "weights", [])}
        self._weights = [i for i, v in enumerate(self.variables) if id(v) in weight_ids]
        self.values: list | None = None
        self.epoch_num: int | None = None
        self.global_step: int | None = None

    def take(self, epoch_num: int, global_step: int) -> None:
        """Copy the model's current weights into the snapshot."""
        self.values = None  # the previous copy is released first
        self.values = [v.value.detach().clone() for v in self.variables]
        self.epoch_num, self.global_step = int(epoch_num), int(global_step)

    def numpy(self) -> list[np.ndarray]:
        """The snapshot's values, in ``model.weights`` order."""
        if self.values is None:
            return []
        return [to_numpy(self.values[i]) for i in self._weights]

    @property
    def nbytes(self) -> int:
        """Device memory the copy holds."""
        if self.values is None:
            return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in self.variables)
        return sum(t.element_size() * t.nelement() for t in self.values)
