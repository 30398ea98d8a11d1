"""Evaluation by generation: ``InferenceRunner(generate=fn)`` in ``fit``,
with a plain Keras greedy decode and with a tiny keras-hub model (random
weights, a tokenizer from a local vocabulary: nothing downloaded). The
corpus scores equal the reference libraries on the whole set, generated
after training with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import keras

sacrebleu = pytest.importorskip("sacrebleu")
jiwer = pytest.importorskip("jiwer")

from infer_callbacks import (CorpusBLEU, ExactMatch, InferenceRunner, ScalarStats, Sliced,  # noqa: E402
                             WordErrorRate)

VOCAB = ["<pad>", "red", "green", "blue", "cat", "dog", "sat", "ran"]
T = 6
N = 53  # no batch size of these tests divides it


def text(ids) -> list[str]:
    return [" ".join(VOCAB[t] for t in row if t) for row in np.asarray(ids)]


def tagger():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T,), dtype="int32", name="tokens"),
                              keras.layers.Embedding(len(VOCAB), 8), keras.layers.Dense(len(VOCAB))])
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def greedy(model, tokens):
    """A plain Keras greedy decode: the argmax token at every position, as text."""
    logits = keras.ops.convert_to_numpy(model(np.asarray(tokens), training=False))
    return {"generated": text(np.argmax(logits, -1))}


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, len(VOCAB), (N, T)).astype("int32")
    x[rng.random((N, T)) < 0.2] = 0
    y = np.where(rng.random((N, T)) < 0.7, x, rng.integers(1, len(VOCAB), (N, T))).astype("int32")
    return x, y


def test_greedy_decode_in_fit_next_to_engine_inferencers():
    x, y = data()
    model = tagger()
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    runner = InferenceRunner(val, [ScalarStats("loss"), CorpusBLEU("generated", "label", decode=text),
                                   WordErrorRate("generated", "label", decode=text)], generate=greedy)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[runner])
    hyps, refs = greedy(model, x)["generated"], text(y)
    logs = {k: v[-1] for k, v in history.history.items()}
    np.testing.assert_allclose(logs["validation_bleu"], sacrebleu.corpus_bleu(hyps, [refs]).score, rtol=1e-9)
    np.testing.assert_allclose(logs["validation_chrf"], sacrebleu.corpus_chrf(hyps, [refs]).score, rtol=1e-9)
    np.testing.assert_allclose(logs["validation_wer"], jiwer.wer(refs, hyps), rtol=1e-9)
    assert np.isfinite(logs["validation_loss"])  # the engine's pass, next to generation's


def test_string_labels_from_tf_data_and_slices():
    x, y = data(1)
    lang = np.where(np.arange(N) % 3 == 0, "en", "de")
    val = tf.data.Dataset.from_tensor_slices(({"tokens": x, "lang": lang}, text(y))).batch(8)
    seen = []

    def generate(model, inputs):
        seen.append(type(inputs["lang"][0]))
        return greedy(model, inputs["tokens"])

    runner = InferenceRunner(val, [ExactMatch(), Sliced(WordErrorRate(), by="lang")], generate=generate)
    model = tagger()
    runner.set_model(model)
    results = runner.trigger()
    assert set(seen) == {str}  # tf.string reaches generate= (and the inferencers) as str
    hyps, refs = np.array(greedy(model, x)["generated"]), np.array(text(y))
    np.testing.assert_allclose(results["validation_exact_match"], np.mean(hyps == refs))
    np.testing.assert_allclose(results["validation_wer"], jiwer.wer(list(refs), list(hyps)), rtol=1e-9)
    for tag in ("en", "de"):
        m = lang == tag
        np.testing.assert_allclose(results[f"validation_wer/{tag}"], jiwer.wer(list(refs[m]), list(hyps[m])),
                                   rtol=1e-9)


def test_asynchronous_generates_on_a_copy_with_each_epochs_weights():
    x, y = data(2)
    model = tagger()
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(9)
    used, weights = [], {}

    def generate(m, tokens):
        used.append(m is model)
        return greedy(m, tokens)

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights[epoch + 1] = [w.copy() for w in self.model.get_weights()]

    runner = InferenceRunner(val, [ScalarStats("loss"), CorpusBLEU(decode=text, chrf=False)],
                             generate=generate, asynchronous=True)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Keep(), runner])
    assert False in used  # background runs generated with the copy
    reference = tagger()
    for epoch, bleu in zip(history.history["validation_epoch"], history.history["validation_bleu"]):
        if np.isnan(epoch):
            continue
        reference.set_weights(weights[int(epoch)])
        expected = sacrebleu.corpus_bleu(greedy(reference, x)["generated"], [text(y)]).score
        np.testing.assert_allclose(bleu, expected, rtol=1e-9, err_msg=f"epoch {epoch}")
    assert history.history["validation_epoch"][-1] == 3


def test_errors_before_training():
    x, y = data()
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    with pytest.raises(TypeError, match="`generate` must be a function"):
        InferenceRunner(val, ExactMatch(), generate="greedy")
    runner = InferenceRunner(val, ExactMatch("generated", "loss"), generate=greedy)
    runner.set_model(tagger())
    with pytest.raises(ValueError, match="'loss'.*generation cannot give"):
        runner.trigger()
    bad = InferenceRunner(val, ExactMatch(), generate=lambda m, t: {"generated": ["x"]})
    bad.set_model(tagger())
    with pytest.raises(ValueError, match="one entry per example"):
        bad.trigger()


@pytest.mark.tensorflow_only("keras-hub's generate compiles per batch shape (slow on JAX); generation's host path "
                              "is the same on JAX, where the greedy-decode tests run")
def test_keras_hub_causal_lm_generate():
    keras_hub = pytest.importorskip("keras_hub")
    vocab = {"<|endoftext|>": 0}
    for token in ["a", "b", "c", "d", "Ġ", "Ġa", "Ġb", "Ġc", "Ġd", "ab", "Ġab", "cd", "Ġcd"]:
        vocab[token] = len(vocab)
    merges = ["a b", "Ġ a", "Ġ b", "Ġ c", "Ġ d", "c d", "Ġa b", "Ġc d"]
    keras.utils.set_random_seed(1)
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer=tokenizer, sequence_length=8)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
    lm.compile(sampler="greedy")
    prompts = ["ab", "cd a", "a b c", "d", "ab cd", "b a"]
    references = ["ab cd", "cd a b", "a b c d", "d d", "ab cd ab", "b a b"]
    val = tf.data.Dataset.from_tensor_slices((prompts, references)).batch(3)
    runner = InferenceRunner(val, [CorpusBLEU(), ExactMatch()],
                             generate=lambda model, x: model.generate(list(x), max_length=8))
    runner.set_model(lm)
    results = runner.trigger()
    hyps = lm.generate(prompts[:3], max_length=8) + lm.generate(prompts[3:], max_length=8)  # one batch shape
    np.testing.assert_allclose(results["validation_bleu"], sacrebleu.corpus_bleu(hyps, [references]).score,
                               rtol=1e-9)
    np.testing.assert_allclose(results["validation_exact_match"], np.mean(np.array(hyps) == references))
