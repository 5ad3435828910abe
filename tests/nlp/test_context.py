"""ConText: each assertion category, scope ends, pseudo-triggers; the extractor's note scores."""

import numpy as np
import pytest

from medflow.nlp.context import find_mentions, sentences
from medflow.nlp.extract import Extractor

T = {"effusion": ["pleural effusion", "effusion"], "pneumothorax": ["pneumothorax"],
     "cardiomegaly": ["cardiomegaly"], "pneumonia": ["pneumonia"], "atelectasis": ["atelectasis"],
     "chest_pain": ["chest pain"]}


def _status(text):
    return [(m.label, m.assertion) for m in find_mentions(text, T)]


@pytest.mark.parametrize("text,expected", [
    ("No pneumothorax or pleural effusion. Mild cardiomegaly.",
     [("pneumothorax", "negated"), ("effusion", "negated"), ("cardiomegaly", "present")]),
    ("Denies chest pain.", [("chest_pain", "negated")]),
    ("No evidence of pneumonia.", [("pneumonia", "negated")]),
    ("Pneumothorax is not seen.", [("pneumothorax", "negated")]),  # backward trigger
    ("No change in the small left pleural effusion.", [("effusion", "present")]),  # pseudo-trigger
    ("No pneumothorax, but a small effusion.", [("pneumothorax", "negated"), ("effusion", "present")]),
    ("No focal consolidation or effusion; stable atelectasis.", [("effusion", "negated"), ("atelectasis", "present")]),
    ("Cannot exclude pneumonia.", [("pneumonia", "possible")]),
    ("Pneumonia cannot be excluded.", [("pneumonia", "possible")]),
    ("Mother had pneumonia.", [("pneumonia", "family")]),
    ("History of pneumothorax.", [("pneumothorax", "historical")]),
    ("Return if chest pain recurs.", [("chest_pain", "hypothetical")]),
    ("Heart 1.5 cm larger. No effusion.", [("effusion", "negated")]),
])
def test_assertions(text, expected):
    assert _status(text) == expected


def test_offsets_point_into_the_text():
    text = "Findings: no   pleural\neffusion. Cardiomegaly."
    ms = find_mentions(text, T)
    assert [text[m.start:m.end] for m in ms] == ["pleural\neffusion", "Cardiomegaly"]
    assert ms[0].assertion == "negated" and "no (negated)" in ms[0].triggers


def test_sentences_do_not_split_decimals():
    assert len(sentences("Nodule 1.5 cm. Stable.")) == 2


def test_learned_assertion_learns_a_site_convention():
    """Here 'possible' findings are not labelled positive: the rules count them, the learned model learns not to."""
    rng = np.random.default_rng(5)
    texts, y = [], []
    for _ in range(300):
        kind = rng.integers(0, 3)
        texts.append(["Right lower lobe pneumonia.", "No pneumonia.", "Possible pneumonia."][kind])
        y.append([int(kind == 0)])
    y = np.array(y)
    rules = Extractor(T, ["pneumonia"], "rules").predict_proba(texts)[:, 0]
    learned = Extractor(T, ["pneumonia"], "learned").fit(texts, y).predict_proba(texts)[:, 0]
    f1 = lambda p: 2 * ((p >= 0.5) & (y[:, 0] == 1)).sum() / ((p >= 0.5).sum() + y.sum())  # noqa: E731
    assert f1(rules) < 0.85 and f1(learned) == 1.0
    state = Extractor(T, ["pneumonia"], "learned").fit(texts, y).state()
    again = Extractor(T, ["pneumonia"], "learned")
    again.load_state(state)
    assert np.allclose(again.predict_proba(texts)[:, 0], learned)


def test_a_label_without_phrases_is_a_config_error():
    from medflow.errors import ConfigError

    with pytest.raises(ConfigError, match=r"no target phrases for label\(s\) \['opacity'\]"):
        Extractor(T, ["opacity"])
