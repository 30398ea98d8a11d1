"""AUC: equal to scikit-learn's roc_auc_score / average_precision_score on
the whole set, for any batch split, with ties, sample weights, several
classes and spilled runs; errors name the bad value."""

from __future__ import annotations

import doctest
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import label_binarize

from infer_callbacks import AUC
from infer_callbacks.inferencers.whole_set import auc as auc_module, state as state_module
from infer_callbacks.inferencers.whole_set.state import ScoreRuns, average_precision, roc_auc
from conftest import random_splits
from helpers.inferencers import check_split_invariance, run_inferencer


def _binary(rng, n, ties):
    score = rng.normal(size=n)
    if ties:
        score = np.round(score, 1)  # many equal scores
    label = (rng.random(n) < 1 / (1 + np.exp(-2 * score))).astype(np.int64)
    label[:2] = [0, 1]  # both classes present
    return label, score.astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 400), ties=st.booleans(), weighted=st.booleans(),
       curve=st.sampled_from(["ROC", "PR"]))
def test_binary_equals_sklearn_for_any_split(seed, n, ties, weighted, curve):
    rng = np.random.default_rng(seed)
    label, score = _binary(rng, n, ties)
    weight = rng.uniform(0, 2, n) if weighted else None
    reference = (roc_auc_score if curve == "ROC" else average_precision_score)(label, score, sample_weight=weight)
    key = "validation_auc" if curve == "ROC" else "validation_pr_auc"
    check_split_invariance(lambda: AUC("label", "score", curve=curve), {"label": label, "score": score},
                           {key: reference}, random_splits(rng, n, 37), sample_weight=weight, rtol=1e-9)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
@pytest.mark.parametrize("curve", ["ROC", "PR"])
def test_multiclass_one_vs_rest_equals_sklearn(rng, average, curve):
    n, c = 301, 4
    logits = np.round(rng.normal(size=(n, c)), 1)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    label = np.argmax(logits + rng.normal(size=(n, c)), 1)
    weight = rng.uniform(0.1, 2, n)
    if curve == "ROC":
        reference = roc_auc_score(label, probs, multi_class="ovr", average=average, sample_weight=weight)
    else:
        reference = average_precision_score(label_binarize(label, classes=range(c)), probs, average=average,
                                            sample_weight=weight)
    key = "validation_auc" if curve == "ROC" else "validation_pr_auc"
    make = lambda: AUC("label", "probs", curve=curve, average=average)  # noqa: E731
    check_split_invariance(make, {"label": label, "probs": probs}, {key: reference},
                           random_splits(rng, n, 50), sample_weight=weight, rtol=1e-9)


def test_from_logits_applies_a_softmax(rng):
    n, c = 150, 3
    logits = rng.normal(size=(n, c)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    label = rng.integers(0, c, n)
    reference = roc_auc_score(label, probs, multi_class="ovr")
    check_split_invariance(lambda: AUC("label", "logits", from_logits=True), {"label": label, "logits": logits},
                           {"validation_auc": reference}, random_splits(rng, n, 40), rtol=1e-9)


def test_multilabel_and_per_class(rng):
    n, c = 200, 3
    score = rng.random((n, c))
    label = (rng.random((n, c)) < score).astype(np.int64)
    expected = {"validation_auc": roc_auc_score(label, score, average="macro")}
    expected.update({f"validation_auc_{k}": roc_auc_score(label[:, k], score[:, k]) for k in range(c)})
    check_split_invariance(lambda: AUC("label", "score", per_class=True), {"label": label, "score": score},
                           expected, random_splits(rng, n, 30))


def test_spilled_runs_give_the_same_number_and_are_removed(rng, tmp_path):
    n = 20000
    label, score = _binary(rng, n, ties=True)
    score = score + rng.normal(scale=1e-3, size=n).astype(np.float32)  # many distinct values
    inf = AUC("label", "score", max_memory_mb=0.05, tmpdir=tmp_path)
    logs, _, _ = run_inferencer(inf, {"label": label, "score": score}, random_splits(rng, n, 500))
    np.testing.assert_allclose(logs["validation_auc"], roc_auc_score(label, score), rtol=1e-9)
    assert os.listdir(tmp_path) == []  # the spill directory is gone


def test_score_runs_merge_like_one_state(rng):
    label, score = _binary(rng, 5000, ties=True)
    parts = [ScoreRuns(max_memory_bytes=4096) for _ in range(3)]
    for i, part in enumerate(parts):
        part.add(score[i::3], label[i::3])
    parts[0].merge(parts[1])
    parts[0].merge(parts[2])
    assert parts[0].num_spilled_runs > 0
    np.testing.assert_allclose(roc_auc(parts[0]), roc_auc_score(label, score), rtol=1e-9)
    np.testing.assert_allclose(average_precision(parts[0]), average_precision_score(label, score), rtol=1e-9)


def test_one_class_or_nan_scores_give_nan_with_a_warning():
    inf = AUC("label", "score")
    with pytest.warns(RuntimeWarning, match="no positives"):
        logs, _, _ = run_inferencer(inf, {"label": np.zeros(4), "score": np.arange(4.0)}, [4])
    assert np.isnan(logs["validation_auc"])
    with pytest.warns(RuntimeWarning, match="NaN score"):
        logs, _, _ = run_inferencer(AUC("label", "score"), {"label": np.array([0, 1]),
                                                            "score": np.array([np.nan, 1.0])}, [2])
    assert np.isnan(logs["validation_auc"])


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="curve='roc2'.*Valid: 'ROC', 'PR'"):
        AUC(curve="roc2")
    with pytest.raises(ValueError, match="average='samples'"):
        AUC(average="samples")
    with pytest.raises(ValueError, match="max_memory_mb=0"):
        AUC(max_memory_mb=0)
    with pytest.raises(ValueError, match="0/1"):
        run_inferencer(AUC("label", "score"), {"label": np.array([0, 2]), "score": np.array([0.1, 0.2])}, [2])
    with pytest.raises(ValueError, match="class ids outside"):
        run_inferencer(AUC("label", "score"), {"label": np.array([0, 3]), "score": np.ones((2, 3))}, [2])
    with pytest.raises(ValueError, match="shape"):
        run_inferencer(AUC("label", "score"), {"label": np.ones((2, 2, 2)), "score": np.ones((2, 2, 2))}, [2])


def test_deep_copy_is_unbound_and_doctests():
    import copy
    inf = AUC("label", "score")
    run_inferencer(inf, {"label": np.array([0, 1]), "score": np.array([0.1, 0.2])}, [2])
    assert copy.deepcopy(inf)._runs is None
    for module in (auc_module, state_module):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert doctest.testmod(module, extraglobs={"np": np}).failed == 0
