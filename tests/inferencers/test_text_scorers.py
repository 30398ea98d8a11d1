"""Text scorers over the whole corpus: equal to sacrebleu, rouge-score and
jiwer on the whole set for any batch split (never a mean of per-batch
scores), strings as str, bytes or lists, token ids through ``decode``."""

from __future__ import annotations

import doctest
import warnings

import numpy as np
import pytest

sacrebleu = pytest.importorskip("sacrebleu")
jiwer = pytest.importorskip("jiwer")
rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

from infer_callbacks import ROUGE, CorpusBLEU, ExactMatch, WordErrorRate  # noqa: E402
from infer_callbacks.inferencers.whole_set import text as text_module, text_base  # noqa: E402
from conftest import random_splits
from helpers.inferencers import check_split_invariance, run_inferencer  # noqa: E402

WORDS = "the a cat dog sat on mat ran fast slow red blue house tree and of".split()


def corpus(rng, n, noise=0.3):
    refs, hyps = [], []
    for _ in range(n):
        ref = list(rng.choice(WORDS, rng.integers(1, 12)))
        hyp = [w if rng.random() > noise else rng.choice(WORDS) for w in ref]
        if rng.random() < 0.2:
            hyp = hyp[:-1] + list(rng.choice(WORDS, 2))
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp) + ("." if rng.random() < 0.3 else ""))
    return np.array(hyps, dtype=object), np.array(refs, dtype=object)


def test_bleu_and_chrf_equal_sacrebleu_on_the_whole_corpus(rng):
    hyps, refs = corpus(rng, 257)
    expected = {"validation_bleu": sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score,
                "validation_chrf": sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score}
    refs_bytes = np.array([r.encode() for r in refs], dtype=object)  # what tf.string gives
    check_split_invariance(lambda: CorpusBLEU("hyp", "ref"), {"hyp": hyps, "ref": refs_bytes}, expected,
                           random_splits(rng, len(hyps), 40), rtol=1e-12)
    # A mean of per-batch BLEU would differ: the corpus value is not a sum.
    per_batch = np.mean([sacrebleu.corpus_bleu(list(hyps[i:i + 10]), [list(refs[i:i + 10])]).score
                         for i in range(0, 250, 10)])
    assert abs(per_batch - expected["validation_bleu"]) > 1e-3


def test_bleu_with_two_references_tokenizer_and_sample_weights(rng):
    hyps, refs = corpus(rng, 90)
    _, refs2 = corpus(rng, 90)
    weight = (rng.random(90) > 0.2).astype(np.float64)  # zero weight: left out
    keep = weight > 0
    expected = {"validation_bleu": sacrebleu.corpus_bleu(list(hyps[keep]), [list(refs[keep]), list(refs2[keep])],
                                                         tokenize="intl", lowercase=True).score}
    make = lambda: CorpusBLEU("hyp", "refs", chrf=False, tokenize="intl", lowercase=True)  # noqa: E731
    check_split_invariance(make, {"hyp": hyps, "refs": np.stack([refs, refs2], 1)}, expected,
                           random_splits(rng, 90, 25), sample_weight=weight, rtol=1e-12)


def test_rouge_is_the_weighted_mean_of_rouge_score(rng):
    hyps, refs = corpus(rng, 120)
    weight = rng.uniform(0, 2, 120)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, h) for h, r in zip(hyps, refs)]
    expected = {f"validation_{t}": np.average([s[t].fmeasure for s in scores], weights=weight)
                for t in ("rouge1", "rougeL")}
    make = lambda: ROUGE("hyp", "ref", rouge_types=["rouge1", "rougeL"], use_stemmer=True)  # noqa: E731
    check_split_invariance(make, {"hyp": hyps, "ref": refs}, expected, random_splits(rng, 120, 30),
                           sample_weight=weight, rtol=1e-12)


def test_wer_and_cer_equal_jiwer_on_the_whole_corpus(rng):
    hyps, refs = corpus(rng, 150)
    hyps[3] = ""  # an empty hypothesis: all deletions
    expected = {"validation_wer": jiwer.wer(list(refs), list(hyps)),
                "validation_cer": jiwer.cer(list(refs), list(hyps))}
    make = lambda: WordErrorRate("hyp", "ref", cer=True)  # noqa: E731
    check_split_invariance(make, {"hyp": hyps, "ref": refs}, expected, random_splits(rng, 150, 33), rtol=1e-12)


def test_exact_match_with_token_ids_through_decode(rng):
    vocab = np.array(["<pad>"] + WORDS)
    ids = rng.integers(1, len(vocab), (60, 5))
    ids[::4, -1] = 0
    label_ids = ids.copy()
    label_ids[::3, 0] = (label_ids[::3, 0] % (len(vocab) - 1)) + 1  # a third differ...
    label_ids[::3, 0] = np.where(label_ids[::3, 0] == ids[::3, 0], label_ids[::3, 0] % 5 + 1, label_ids[::3, 0])

    def decode(batch):
        return [" ".join(vocab[t] for t in row if t) for row in batch]

    match = np.array([a == b for a, b in zip(decode(ids), decode(label_ids))])
    make = lambda: ExactMatch("ids", "label_ids", decode=decode)  # noqa: E731
    check_split_invariance(make, {"ids": ids, "label_ids": label_ids},
                           {"validation_exact_match": match.mean()}, random_splits(rng, 60, 13))
    with pytest.raises(TypeError, match="decode="):
        run_inferencer(ExactMatch("ids", "label_ids"), {"ids": ids, "label_ids": label_ids}, [60])


def test_errors_and_missing_extra(monkeypatch):
    with pytest.raises(ValueError, match="rouge_types=\\['rouge0'\\]"):
        ROUGE(rouge_types=["rouge0"])
    with pytest.raises(ValueError, match="tokenize='nope'"):
        CorpusBLEU(tokenize="nope")
    with pytest.raises(ValueError, match="`hypotheses` must be a fetch name"):
        ExactMatch("")
    monkeypatch.setitem(__import__("sys").modules, "jiwer", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'infer_callbacks\[text\]'"):
        WordErrorRate()


def test_doctests():
    for module in (text_module, text_base):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert doctest.testmod(module, extraglobs={"np": np}).failed == 0
