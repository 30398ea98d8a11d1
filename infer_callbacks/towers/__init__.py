"""Towers: the tower context (``is_training``), the tower spec (output
names), the default Keras tower (Keras's loss semantics, exact pairs) and
``ModelDesc`` (a tower described tensorpack's way). Towers compute tensors;
they aggregate nothing.

The default Keras tower (``keras_tower``, ``keras_loss``) is written on
``keras.ops`` and ``keras.tree`` and runs on every Keras backend; its own
code calls ``tensorflow`` only on that backend. ``spec``, ``names`` and
``model_desc`` (named ops, ``tf.function`` signatures, the ``ModelDesc``
trainer) use TensorFlow; the Keras tower takes only ``exact_keys`` and
``SAMPLE_WEIGHT_KEY`` from ``spec``.

May import: ``distribute``, ``_util``.
"""
