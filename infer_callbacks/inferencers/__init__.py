"""Inferencers: the ``Inferencer`` protocol and its run context, the
built-ins, ``KerasMetric``, ``GatherOutputs``, ``ConfusionMatrix``, the
whole-set metrics (``whole_set/``: ``AUC``, text scorers, ``COCOMeanAP``,
``Sliced``) and tensorpack's ``stats`` counters. Inferencers see numpy arrays, one batch at a
time; they never touch TensorFlow's graph or devices.

May import: ``_util`` (and ``keras`` for ``KerasMetric``'s metric objects).
"""
