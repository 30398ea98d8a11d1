"""The callbacks that validate: ``InferenceRunner``,
``DataParallelInferenceRunner``, ``PeriodicTrigger`` (its ``Schedule`` and
``TimeBudget``), ``Objective`` (one key made of several results), asynchronous runs,
dispatch of batches to inferencers, reports for the monitors, and
``keras_glue`` (the one module that meets Keras's ``CallbackList``).
``runner.engine`` binds a model, runs the compiled multi-batch step and its
background pipeline. The runner decides *when*; inferencers decide *what*.

May import: ``data``, ``distribute``, ``towers``, ``inferencers``, ``_util``.
"""
