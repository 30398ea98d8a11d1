"""Whole-set metrics: numbers computed once over the whole validation set by
the reference library's rule (DESIGN decision 11), not from per-batch sums:
exact ``AUC`` (ROC and PR), corpus text scores (``CorpusBLEU``, ``ROUGE``,
``WordErrorRate``, ``ExactMatch``), ``COCOMeanAP`` and ``Sliced`` (any
inferencer per slice of the data). Each keeps mergeable state with bounded
memory (``state.py``: sorted runs and rows spilled to disk). They see numpy
only and import the reference libraries (sacrebleu, rouge-score, jiwer,
pycocotools) lazily, the optional extras ``[text]`` and ``[coco]``.

May import: ``_util`` and ``inferencers`` (the ``Inferencer`` base).
"""
