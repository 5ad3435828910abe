"""Text featurizer: offsets, windows that never truncate, a saved featurizer that gives identical inputs."""

import json

import numpy as np
import pandas as pd

from medflow.features.text import UNK, TextFeaturizer, tokenize


def test_tokens_keep_their_offsets():
    text = "No  pleural effusion; heart size 1.5 cm, patient's."
    toks, off = tokenize(text)
    assert toks[:4] == ["no", "pleural", "effusion", ";"]
    assert all(text[a:b].lower() == t for t, (a, b) in zip(toks, off, strict=True))
    assert "patient's" in toks


def _frame(texts):
    return pd.DataFrame({"text": texts})


def test_long_notes_are_split_into_windows_not_cut():
    train = _frame(["alpha beta gamma"] * 3)
    feat = TextFeaturizer(max_len=8, min_count=1).fit(train)
    long_note = " ".join(["alpha", "beta", "gamma"] * 7)  # 21 tokens: 3 windows of 8
    x = feat.transform(_frame([long_note, "beta"]))
    b = x.batch(np.array([0, 1]))
    assert b["ids"].shape == (4, 8) and b["owner"].tolist() == [0, 0, 0, 1] and b["n"] == 2
    assert int((b["ids"][:3] != 0).sum()) == 21  # every token of the long note is in some window
    assert x.tokens(1) == [("beta", 0, 4)]


def test_unknown_words_and_vocabulary_from_training_only():
    feat = TextFeaturizer(min_count=2).fit(_frame(["effusion effusion", "edema", "effusion"]))
    x = feat.transform(_frame(["effusion edema"]))
    ids = x.batch(np.array([0]))["ids"][0].tolist()
    assert ids[0] == feat.index["effusion"] and ids[1] == UNK  # edema seen once: below min_count


def test_saved_featurizer_gives_identical_inputs():
    texts = ["No pleural effusion.", "Mild cardiomegaly, no effusion.", "Clear lungs. No effusion."] * 3
    feat = TextFeaturizer(max_len=4).fit(_frame(texts))
    again = TextFeaturizer.from_dict(json.loads(json.dumps(feat.to_dict())))
    a, b = feat.transform(_frame(texts)), again.transform(_frame(texts))
    assert np.array_equal(a.ids, b.ids)
    assert np.allclose(a.to_matrix().toarray(), b.to_matrix().toarray())
    assert a.to_matrix().shape[0] == len(texts) and a.matrix_names()[0].startswith("tfidf:")
