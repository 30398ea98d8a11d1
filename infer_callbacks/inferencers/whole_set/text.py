"""Text scorers over the whole corpus: ``CorpusBLEU`` (sacrebleu's BLEU and
chrF), ``ROUGE`` (rouge-score), ``WordErrorRate`` (jiwer), ``ExactMatch``.

Each keeps the sufficient statistics of its reference library (sacrebleu's
per-segment n-gram counts summed, jiwer's edit counts summed, sums of
per-example scores and weights) and computes the score once at the end by
the library's rule: the corpus value, never a mean of per-batch scores, in
memory that does not grow with the set. Install the libraries with
``pip install 'infer_callbacks[text]'``.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

from infer_callbacks.inferencers.whole_set.text_base import TextScorer, require

__all__ = ["CorpusBLEU", "ROUGE", "WordErrorRate", "ExactMatch"]


class CorpusBLEU(TextScorer):
    """sacrebleu's corpus BLEU (and chrF) of generated text over the whole set.

    Equal to ``sacrebleu.corpus_bleu(hyps, refs)`` (and ``corpus_chrf``) on
    the whole set: each batch's segment statistics (n-gram matches and
    totals, lengths) are summed, and the score is computed once from the
    sums, as sacrebleu's ``corpus_score`` does. Examples of zero sample
    weight are left out; other weights do not scale a corpus score.

    Args:
        hypotheses: the generated text's fetch name (``[B]`` strings).
        references: the references' fetch name (``[B]`` or ``[B, R]``).
        chrf: also report chrF (``<prefix>_chrf``).
        tokenize: sacrebleu's tokenizer (``'13a'``, ``'intl'``, ``'char'``...).
        lowercase: compare lower-cased.
        chrf_word_order: 2 for chrF++.
        decode: a function turning a batch's token ids into strings (text
            fetches pass as they are).
        prefix: keys are ``<prefix>_bleu`` and ``<prefix>_chrf``.

    Example:

    >>> bleu = CorpusBLEU("generated", "label", chrf=False)
    >>> bleu.before_inference()
    >>> bleu.on_fetches([["the cat sat on the mat"], [b"the cat sat on the mat"]], 1)
    >>> round(bleu.after_inference()["validation_bleu"], 6)
    100.0
    """

    who = "CorpusBLEU"

    def __init__(self, hypotheses: str = "generated", references: str = "label", *, chrf: bool = True,
                 tokenize: str | None = None, lowercase: bool = False, chrf_word_order: int = 0,
                 decode: Callable | None = None, prefix: str = "validation"):
        super().__init__(hypotheses, references, decode=decode, prefix=prefix)
        require("sacrebleu", "text", "CorpusBLEU")
        from sacrebleu.metrics import BLEU, CHRF
        self.chrf, self.tokenize, self.lowercase, self.chrf_word_order = bool(chrf), tokenize, lowercase, chrf_word_order
        try:
            self._metrics = {"bleu": BLEU(tokenize=tokenize, lowercase=lowercase)}
        except Exception as e:  # sacrebleu names the valid tokenizers
            raise ValueError(f"CorpusBLEU: sacrebleu refused tokenize={tokenize!r}: {e}") from None
        if self.chrf:
            self._metrics["chrf"] = CHRF(word_order=chrf_word_order, lowercase=lowercase)

    def result_names(self) -> list[str]:
        return [self.key(n) for n in self._metrics]

    def _before_inference(self) -> None:
        self._sums: dict[str, np.ndarray | None] = {n: None for n in self._metrics}
        self._streams = None

    def _update(self, hyps, refs, weight) -> None:
        count = {len(r) for r in refs}
        if len(count) != 1 or (self._streams is not None and count != {self._streams}):
            raise ValueError(f"CorpusBLEU: every example needs the same number of references; "
                             f"received {sorted(count | ({self._streams} if self._streams else set()))}.")
        self._streams = count.pop()
        streams = [list(s) for s in zip(*refs)]
        for name, metric in self._metrics.items():
            stats = metric._extract_corpus_statistics(hyps, streams)  # sacrebleu's corpus_score does this
            summed = np.sum(np.asarray(stats, dtype=np.int64), axis=0)
            self._sums[name] = summed if self._sums[name] is None else self._sums[name] + summed

    def _after_inference(self) -> dict[str, float]:
        out = {}
        for name, metric in self._metrics.items():
            sums = self._sums[name]
            out[self.key(name)] = (float("nan") if sums is None else
                                   float(metric._compute_score_from_stats([int(v) for v in sums]).score))
        return out


class ROUGE(TextScorer):
    """rouge-score's ROUGE F-measures, averaged over every example of the set.

    ``<prefix>_<rouge type>`` is the mean over the whole set (weighted by
    the sample weights) of ``RougeScorer(rouge_types).score(reference,
    hypothesis)[type].fmeasure`` (with several references, the best, as
    ``score_multi``): numpy's mean of the per-example scores, not
    rouge-score's bootstrap median.

    Args:
        hypotheses: the generated text's fetch name.
        references: the references' fetch name (``[B]`` or ``[B, R]``).
        rouge_types: e.g. ``('rouge1', 'rouge2', 'rougeL', 'rougeLsum')``.
        use_stemmer: rouge-score's Porter stemmer.
        decode: a function turning a batch's values into strings.
        prefix: keys are ``<prefix>_<type>``.
    """

    who = "ROUGE"

    def __init__(self, hypotheses: str = "generated", references: str = "label", *,
                 rouge_types: Sequence[str] = ("rouge1", "rouge2", "rougeL"), use_stemmer: bool = False,
                 decode: Callable | None = None, prefix: str = "validation"):
        super().__init__(hypotheses, references, decode=decode, prefix=prefix)
        require("rouge_score", "text", "ROUGE")
        from rouge_score import rouge_scorer
        self.rouge_types = [rouge_types] if isinstance(rouge_types, str) else list(rouge_types)
        bad = [t for t in self.rouge_types if not (isinstance(t, str) and re.fullmatch(r"rouge([1-9]\d*|L|Lsum)", t))]
        if bad or not self.rouge_types:
            raise ValueError(f"ROUGE: unknown rouge type(s) {bad}. Received: rouge_types={self.rouge_types!r}. "
                             "Valid: 'rouge1', 'rouge2', ... (n-grams), 'rougeL', 'rougeLsum'")
        self._scorer = rouge_scorer.RougeScorer(self.rouge_types, use_stemmer=use_stemmer)
        self.use_stemmer = use_stemmer

    def result_names(self) -> list[str]:
        return [self.key(t) for t in self.rouge_types]

    def _before_inference(self) -> None:
        self._sums = np.zeros(len(self.rouge_types))
        self._weight = 0.0

    def _update(self, hyps, refs, weight) -> None:
        for hyp, ref, w in zip(hyps, refs, weight):
            scores = (self._scorer.score(ref[0], hyp) if len(ref) == 1 else self._scorer.score_multi(ref, hyp))
            self._sums += w * np.array([scores[t].fmeasure for t in self.rouge_types])
        self._weight += float(weight.sum())

    def _after_inference(self) -> dict[str, float]:
        values = self._sums / self._weight if self._weight else np.full(len(self.rouge_types), np.nan)
        return {self.key(t): float(v) for t, v in zip(self.rouge_types, values)}


class WordErrorRate(TextScorer):
    """jiwer's corpus word error rate (and, optionally, character error rate).

    ``(substitutions + deletions + insertions) / reference words`` summed
    over the whole set, which is ``jiwer.wer(references, hypotheses)`` on
    the whole set (not a mean of per-sentence rates). Examples of zero
    sample weight are left out.

    Args:
        hypotheses: the generated text's fetch name.
        references: the references' fetch name (one reference per example).
        cer: also report ``<prefix>_cer`` (``jiwer.cer``).
        decode: a function turning a batch's values into strings.
        prefix: keys are ``<prefix>_wer`` and ``<prefix>_cer``.
    """

    who = "WordErrorRate"
    multi_reference = False

    def __init__(self, hypotheses: str = "generated", references: str = "label", *, cer: bool = False,
                 decode: Callable | None = None, prefix: str = "validation"):
        super().__init__(hypotheses, references, decode=decode, prefix=prefix)
        require("jiwer", "text", "WordErrorRate")
        self.cer = bool(cer)

    def result_names(self) -> list[str]:
        return [self.key("wer")] + ([self.key("cer")] if self.cer else [])

    def _before_inference(self) -> None:
        self._errors = np.zeros(2)  # words, characters
        self._lengths = np.zeros(2)

    def _update(self, hyps, refs, weight) -> None:
        jiwer = require("jiwer", "text", "WordErrorRate")
        parts = [jiwer.process_words] + ([jiwer.process_characters] if self.cer else [])
        for i, process in enumerate(parts):
            out = process(refs, hyps)
            self._errors[i] += out.substitutions + out.deletions + out.insertions
            self._lengths[i] += out.substitutions + out.deletions + out.hits

    def _after_inference(self) -> dict[str, float]:
        rates = np.divide(self._errors, self._lengths, out=np.full(2, np.nan), where=self._lengths > 0)
        out = {self.key("wer"): float(rates[0])}
        if self.cer:
            out[self.key("cer")] = float(rates[1])
        return out


class ExactMatch(TextScorer):
    """The share of examples whose hypothesis equals a reference (after
    ``strip`` and ``lowercase``), weighted by the sample weights.

    Example:

    >>> em = ExactMatch("generated", "label")
    >>> em.before_inference()
    >>> em.on_fetches([["Paris", "rome "], np.array([b"Paris", b"Madrid"], dtype=object)], 2)
    >>> em.after_inference()
    {'validation_exact_match': 0.5}
    """

    who = "ExactMatch"

    def __init__(self, hypotheses: str = "generated", references: str = "label", *, strip: bool = True,
                 lowercase: bool = False, decode: Callable | None = None, prefix: str = "validation"):
        super().__init__(hypotheses, references, decode=decode, prefix=prefix)
        self.strip, self.lowercase = bool(strip), bool(lowercase)

    def result_names(self) -> list[str]:
        return [self.key("exact_match")]

    def _norm(self, text: str) -> str:
        text = text.strip() if self.strip else text
        return text.lower() if self.lowercase else text

    def _before_inference(self) -> None:
        self._hits = self._weight = 0.0

    def _update(self, hyps, refs, weight) -> None:
        hit = np.array([self._norm(h) in {self._norm(r) for r in rs} for h, rs in zip(hyps, refs)])
        self._hits += float(np.dot(weight, hit))
        self._weight += float(weight.sum())

    def _after_inference(self) -> dict[str, float]:
        return {self.key("exact_match"): self._hits / self._weight if self._weight else float("nan")}
