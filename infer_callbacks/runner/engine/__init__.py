"""The engine: a model bound to a runner's configuration and run on a
backend. ``base.py`` states what an engine and a binding are and holds what
every engine shares (the tower choice, fetch errors); ``select.py`` picks the
engine of the Keras backend in use; ``fetch_table.py``, ``pipeline.py``,
``host_blocks.py`` and ``host_chunk.py`` are the shared host side (exact
pairs, the pace of calls, numpy blocks in, a call's outputs out). One
sub-package per backend (``tensorflow/``, ``jax/``, ``torch/``) owns its
devices, placement, distribution and compiled step.

May import: ``data``, ``distribute``, ``towers``, ``inferencers``, ``_util``;
never ``runner``'s callbacks above it.
"""
