"""``ChiefOnly``: tensorpack's ``chief_only`` flag and ``set_chief_only()``
for the package's callbacks (not public API; may be imported anywhere).

What the flag does depends on the callback, as ``docs/devices.md`` says:

=====================  =======  ==============================================
callback               default  effect on a worker other than the chief
=====================  =======  ==============================================
InferenceRunner (and   False    none: every worker takes part in the
DataParallel...)                validation (its collectives need them); only
                                the chief's ``Monitors`` write files
PeriodicTrigger        wrapped  none of its own: it copies the wrapped
                       one's    callback's flag at construction (tensorpack)
Monitors               True     ``False``: that worker's ``Monitors`` run all
                                their writers, files included (give each
                                worker its own logdir); ``True``: only the
                                console writers
ModelSaver, MinSaver,  True     none: files are the chief's whatever the flag
MaxSaver                        (other workers save to a temporary directory)
=====================  =======  ==============================================
"""

from __future__ import annotations

__all__ = ["ChiefOnly"]


class ChiefOnly:
    """Mixin: a ``chief_only`` attribute (class default ``True``, as
    tensorpack's ``Callback``) and ``set_chief_only(v=True) -> self``."""

    chief_only: bool = True

    def set_chief_only(self, v: bool = True):
        """Set :attr:`chief_only` and return the callback (tensorpack's API:
        ``InferenceRunner(...).set_chief_only(False)``)."""
        self.chief_only = bool(v)
        return self
