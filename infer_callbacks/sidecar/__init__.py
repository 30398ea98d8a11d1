"""Beside training: ``SidecarEvaluator`` runs a runner's inferencers on each
new checkpoint, in another process or machine; ``python -m
infer_callbacks.sidecar`` is its command line (``__main__.py``).

May import: ``runner``, ``monitors``, ``checkpoints``, ``inferencers``,
``distribute``, ``_util``.
"""

from infer_callbacks.sidecar.evaluator import SidecarEvaluator

__all__ = ["SidecarEvaluator"]
