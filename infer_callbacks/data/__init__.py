"""Input: turning what the user passes (``tf.data``, tensorpack-style
DataFlows, iterables of batches, numpy ``(x, y)``, a torch ``DataLoader``)
into sized, re-iterable, prefetched batches, and the queue that carries
Python inputs to the step.

May import: ``infer_callbacks._util``; knows nothing about models.
"""
