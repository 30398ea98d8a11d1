"""Towers: the tower context (``is_training``), the tower spec (output
names), the default Keras tower (Keras's loss semantics, exact pairs) and
``ModelDesc`` (a tower described tensorpack's way). Towers compute tensors;
they aggregate nothing.

May import: ``distribute``, ``_util``.
"""
