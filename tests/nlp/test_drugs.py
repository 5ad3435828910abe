"""Drug lexicons (ChEMBL's approved drugs, brands, abbreviations, a CSV list, an RxNorm release), the tagger that
combines them with what it learned, normalization, and dose / route / frequency / duration linked to their drug;
measured on the other-style notes no model trained on."""

import numpy as np
import pytest

from medflow.data.simulate.notes import simulate_notes
from medflow.data.simulate.notes_other import simulate_other_notes
from medflow.errors import DataError
from medflow.nlp.drugs import BUILTIN_LEXICONS, load_lexicon
from medflow.nlp.medications import link, medication_table
from medflow.nlp.tagger import SpanTagger, span_scores


def _found(lex, text):
    return [(m["text"], m["name"]) for m in lex.find(text)]


def test_chembl_brands_abbreviations_salts_combinations():
    lex = load_lexicon(BUILTIN_LEXICONS)
    assert len(lex) > 2600
    got = lex.find("home meds: Lisinopril 10 mg daily; metoprolol tartrate 25mg po bid; amlodipine besylate 5 mg")
    assert [(m["text"], m["id"]) for m in got][:1] == [("Lisinopril", "CHEMBL419213")]
    assert [m["name"] for m in got] == ["LISINOPRIL", "METOPROLOL TARTRATE", "AMLODIPINE BESYLATE"]
    # a salt's base name reaches it unless the base is an entry of its own
    assert lex.lookup("alendronate").name == "ALENDRONATE SODIUM" and lex.lookup("amlodipine").name == "AMLODIPINE"
    assert _found(lex, "Lasix 40 IV, Zofran prn") == [("Lasix", "FUROSEMIDE"), ("Zofran", "ONDANSETRON")]
    combo = lex.find("Zosyn 4.5 g then piperacillin-tazobactam; TMP-SMX DS")
    assert [m["id"] for m in combo] == ["CHEMBL702+CHEMBL404"] * 2 + ["CHEMBL443+CHEMBL22"]
    # ambiguous abbreviations count only with a dose, volume, rate or route after them, in the same sentence
    text = "ASA class II. ASA 81 mg daily. NS. HCTZ 25 mg. NS 1 L IV bolus. LR @ 100 mL/hr. APAP prn"
    assert [t for t, _ in _found(lex, text)] == ["ASA", "HCTZ", "NS", "LR", "APAP"]
    assert "heparin" not in {t for t, _ in _found(lex, "heparin 5000 units SC")}  # not a small molecule


def test_csv_and_rxnorm_lexicons_and_their_errors(tmp_path):
    (tmp_path / "site.csv").write_text("name,id,synonyms\nZynterol,SITE-1,ztl|zyn-terol\n")
    lex = load_lexicon([tmp_path / "site.csv", "chembl"])
    assert [(m["text"], m["id"]) for m in lex.find("ZTL 5 mg and zyn-terol, warfarin")][:2] == \
        [("ZTL", "SITE-1"), ("zyn-terol", "SITE-1")]
    (tmp_path / "bad.csv").write_text("drug,code\nx,1\n")
    with pytest.raises(DataError, match=r"bad\.csv: a drug lexicon needs a 'name' column.*\['drug', 'code'\]"):
        load_lexicon([tmp_path / "bad.csv"])
    (tmp_path / "empty.csv").write_text("name\nzyn\n\"\"\n")
    with pytest.raises(DataError, match=r"empty\.csv: row 3 has an empty 'name'"):
        load_lexicon([tmp_path / "empty.csv"])
    rrf = tmp_path / "rrf"
    rrf.mkdir()
    with pytest.raises(DataError, match=r"rrf: no RXNCONSO\.RRF here; give the 'rrf' folder of an RxNorm release"):
        load_lexicon([rrf])
    # RXCUI|LAT|TS|LUI|STT|SUI|ISPREF|RXAUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF
    rows = [("6809", "IN", "metformin"), ("203150", "BN", "Glucophage"), ("861004", "PIN", "metformin hydrochloride"),
            ("6809", "SY", "dimethylbiguanide")]
    (rrf / "RXNCONSO.RRF").write_text("".join(
        f"{cui}|ENG||L1|PF|S1|Y|A{k}||||RXNORM|{tty}|{cui}|{s}||N|4096|\n" for k, (cui, tty, s) in enumerate(rows))
        + "999|ENG||L|PF|S|Y|A9||||MTHSPL|SU|999|ignored drug||N||\n")
    (rrf / "RXNREL.RRF").write_text("6809|A1|CUI|RN|203150|A2|CUI|tradename_of||RXNORM|RXNORM|||N||\n"
                                    "6809|A1|CUI|RB|861004|A3|CUI|form_of||RXNORM|RXNORM|||N||\n")
    rx = load_lexicon([rrf])
    assert {m["text"]: (m["id"], m["name"]) for m in rx.find("Glucophage; metformin HCl; dimethylbiguanide")} == \
        {"Glucophage": ("6809", "metformin"), "metformin": ("6809", "metformin"),
         "dimethylbiguanide": ("6809", "metformin")}
    assert rx.lookup("metformin hydrochloride").id == "6809" and rx.lookup("ignored drug") is None
    (rrf / "RXNCONSO.RRF").write_text("6809|ENG|metformin\n")
    with pytest.raises(DataError, match=r"RXNCONSO\.RRF: line 1 has 3 fields"):
        load_lexicon([rrf])
    with pytest.raises(DataError, match=r"drug lexicon 'nope\.csv': no such file"):
        load_lexicon(["nope.csv"])


def test_attributes_link_to_their_drug():
    text = "home meds: lisinopril 10 mg daily, metformin 500 mg PO BID; 20 mg of atorvastatin\nKCl x 3 days"
    def span(t, label, start=0):
        a = text.index(t, start)
        return {"start": a, "end": a + len(t), "label": label, "text": t, "attributes": {}}
    sp = [span("lisinopril", "DRUG"), span("10 mg", "DOSE"), span("daily", "FREQUENCY"), span("metformin", "DRUG"),
          span("500 mg", "DOSE"), span("PO", "ROUTE"), span("BID", "FREQUENCY"), span("20 mg", "DOSE"),
          span("atorvastatin", "DRUG"), span("x 3 days", "DURATION")]
    link(text, sp)
    drug_of = {s["text"]: s["attributes"].get("drug") for s in sp if s["label"] != "DRUG"}
    assert drug_of == {"10 mg": sp[0]["start"], "daily": sp[0]["start"], "500 mg": sp[3]["start"],
                       "PO": sp[3]["start"], "BID": sp[3]["start"], "20 mg": sp[8]["start"], "x 3 days": None}
    table = medication_table(["n1"], [sp])
    assert table[["drug", "dose", "route", "frequency"]].values.tolist() == [
        ["lisinopril", "10 mg", "", "daily"], ["metformin", "500 mg", "PO", "BID"], ["atorvastatin", "20 mg", "", ""]]


@pytest.fixture(scope="module")
def taggers():
    frame, spans = simulate_notes(200, seed=0, annotate="clinical")
    texts, gold = frame["text"].tolist(), [spans[n] for n in frame["note_id"]]
    return SpanTagger(lexicon=list(BUILTIN_LEXICONS)).fit(texts, gold), SpanTagger().fit(texts, gold)


def test_drugs_never_seen_in_training_on_another_style(taggers):
    """Trained on the first generator's notes (11 drugs), read on the other style (58 written forms, brands,
    abbreviations, salts): drugs the lexicon knows are found (strict) and normalized; the tagger alone misses most."""
    with_lex, alone = taggers
    frame, spans = simulate_other_notes(60, seed=1, annotate="clinical")
    gold = [spans[n] for n in frame["note_id"]]
    lex = with_lex.lexicon
    pred = with_lex.extract(frame["text"].tolist())

    def recall(pred, known: bool) -> float:
        hit = n = 0
        for g, p in zip(gold, pred, strict=True):
            got = {(s["start"], s["end"]) for s in p if s["label"] == "DRUG"}
            for s in g:
                written = frame_text(g, s)
                if s["label"] == "DRUG" and (lex.lookup(written) is not None or bool(lex.find(written))) == known:
                    n += 1
                    hit += (s["start"], s["end"]) in got
        return hit / n

    texts = dict(zip(frame["note_id"], frame["text"], strict=True))
    owner = {id(s): texts[n] for n in frame["note_id"] for s in spans[n]}
    frame_text = lambda g, s: owner[id(s)][s["start"]:s["end"]]  # noqa: E731
    assert recall(pred, True) >= 0.95
    assert 0.2 < recall(pred, False) < 0.9  # outside the lexicon (heparin, insulins, senna): from context alone
    assert recall(alone.extract(frame["text"].tolist()), True) < 0.6
    sc = span_scores(gold, pred, n_boot=50)
    assert sc["strict"]["DRUG"]["precision"] > 0.95 and sc["relation_accuracy"]["value"] > 0.9
    right = [s["attributes"]["normalized_name"] == g["attributes"]["generic"]
             for gs, ps in zip(gold, pred, strict=True) for g in gs if g["label"] == "DRUG"
             for s in ps if (s["start"], s["end"]) == (g["start"], g["end"]) and s["attributes"]["normalized_id"]]
    assert len(right) > 100 and np.mean(right) > 0.97


def test_saved_tagger_keeps_a_file_lexicon(tmp_path):
    (tmp_path / "site.csv").write_text("name,id\nZynterol,SITE-1\n")
    frame, spans = simulate_notes(60, seed=0, annotate="clinical")
    tagger = SpanTagger(lexicon=[str(tmp_path / "site.csv"), "chembl"]).fit(
        frame["text"].tolist(), [spans[n] for n in frame["note_id"]])
    meta, arrays = tagger.state()
    (tmp_path / "site.csv").unlink()  # the saved model predicts without the file
    again = SpanTagger.from_state(meta, arrays)
    note = "Meds: Zynterol 5 mg PO daily; warfarin 2 mg PO nightly."
    assert again.extract([note]) == tagger.extract([note])
    got = {s["text"]: s["attributes"].get("normalized_id") for s in again.extract([note])[0] if s["label"] == "DRUG"}
    assert got == {"Zynterol": "SITE-1", "warfarin": "CHEMBL1464"}
