"""The callbacks that validate: ``InferenceRunner``,
``DataParallelInferenceRunner``, ``PeriodicTrigger`` (its ``Schedule`` and
``TimeBudget``), ``Objective`` (one key made of several results),
asynchronous runs, several sets, and the host side of a pass (dispatch of
batches to the inferencers, generation). ``runner.engine`` is the backend
side: one interface (``engine/base.py``) and one sub-package per Keras
backend, each owning its devices and placement; the callbacks never ask
which backend runs. The runner decides *when*; inferencers decide *what*.

May import: ``fit``, ``data``, ``distribute``, ``towers``, ``inferencers``, ``_util``.
"""
