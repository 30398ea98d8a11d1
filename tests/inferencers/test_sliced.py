"""Sliced: any inferencer per slice in one pass, equal to the inferencer
run on each slice's examples alone; keys carry the slice name."""

from __future__ import annotations

import doctest
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from infer_callbacks import AUC, ExactMatch, ScalarStats, Sliced
from infer_callbacks.inferencers.whole_set import sliced as sliced_module
from conftest import random_splits
from helpers.inferencers import check_split_invariance, run_inferencer


def test_auc_per_language_equals_sklearn_per_slice(rng):
    n = 240
    score = np.round(rng.normal(size=n), 1)
    label = (rng.random(n) < 1 / (1 + np.exp(-score))).astype(int)
    lang = np.array([b"en", b"de", b"fr zh"], dtype=object)[rng.integers(0, 3, n)]
    weight = rng.uniform(0.5, 1.5, n)
    expected = {"validation_auc": roc_auc_score(label, score, sample_weight=weight)}
    for raw, name in ((b"en", "en"), (b"de", "de"), (b"fr zh", "fr_zh")):
        m = lang == raw
        expected[f"validation_auc/{name}"] = roc_auc_score(label[m], score[m], sample_weight=weight[m])
    check_split_invariance(lambda: Sliced(AUC("label", "score"), by="lang"),
                           {"label": label, "score": score, "lang": lang}, expected,
                           random_splits(rng, n, 31), sample_weight=weight, rtol=1e-9)


def test_slice_fn_buckets_and_without_overall(rng):
    n = 100
    loss = rng.random(n)
    length = rng.integers(1, 40, n)
    bucket = lambda v: np.where(v > 20, "long", "short")  # noqa: E731
    expected = {f"validation_loss/{b}": loss[bucket(length) == b].mean() for b in ("long", "short")}
    make = lambda: Sliced(ScalarStats("loss"), by="length", slice_fn=bucket, overall=False)  # noqa: E731
    check_split_invariance(make, {"loss": loss, "length": length}, expected, random_splits(rng, n, 17))


def test_too_many_slices_and_errors(rng):
    with pytest.raises(ValueError, match="max_slices=3"):
        run_inferencer(Sliced(ScalarStats("loss"), by="id", max_slices=3),
                       {"loss": np.ones(5), "id": np.arange(5)}, [5])
    with pytest.raises(TypeError, match="must be an infer_callbacks.Inferencer"):
        Sliced("loss", by="id")
    with pytest.raises(ValueError, match="by=''"):
        Sliced(ScalarStats("loss"), by="")


def test_doctest():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert doctest.testmod(sliced_module, extraglobs={"np": np, "ExactMatch": ExactMatch}).failed == 0
