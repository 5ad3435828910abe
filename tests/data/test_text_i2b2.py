"""Annotated corpora as challenge organizers ship them: i2b2 2014 de-identification XML, i2b2 2009 medication
entries (line:token offsets, relations), BRAT relations (n2c2 2018); and what a broken file says."""

import pytest

from medflow.data.text import read_notes
from medflow.errors import DataError

NOTE_2014 = "Record date: 2067-05-03\nMr. Lopez, MRN 8472291, seen at Hillcrest. Call 555-123-4567.\n"


def _xml(text, tags):
    body = "".join(f'<{cat} id="P{i}" start="{text.index(v)}" end="{text.index(v) + len(v)}" text="{v}" '
                   f'TYPE="{typ}" comment="" />\n' for i, (cat, typ, v) in enumerate(tags))
    return f'<?xml version="1.0" encoding="UTF-8" ?>\n<deIdi2b2>\n<TEXT><![CDATA[{text}]]></TEXT>\n<TAGS>\n{body}' \
           f'</TAGS>\n</deIdi2b2>\n'


def test_i2b2_2014_xml(tmp_path):
    tags = [("DATE", "DATE", "2067-05-03"), ("NAME", "PATIENT", "Lopez"), ("ID", "MEDICALRECORD", "8472291"),
            ("LOCATION", "HOSPITAL", "Hillcrest"), ("CONTACT", "PHONE", "555-123-4567")]
    (tmp_path / "110-01.xml").write_text(_xml(NOTE_2014, tags))
    ds = read_notes(str(tmp_path))
    spans = ds.text.spans["110-01"]
    assert ds.frame["text"].iloc[0] == NOTE_2014
    assert [(s["label"], NOTE_2014[s["start"]:s["end"]]) for s in spans] == [
        ("DATE", "2067-05-03"), ("PATIENT", "Lopez"), ("MRN", "8472291"), ("HOSPITAL", "Hillcrest"),
        ("PHONE", "555-123-4567")]
    assert spans[2]["attributes"] == {"i2b2_type": "MEDICALRECORD", "i2b2_category": "ID"}


def _refused(folder, name: str, content: str, match: str) -> None:
    (folder / name).write_text(content)
    with pytest.raises(DataError, match=match):
        read_notes(str(folder))


@pytest.mark.parametrize("content, match", [
    ("<deIdi2b2><TEXT>abc</TEXT><TAGS><DATE start='0' end='x'/></TAGS></deIdi2b2>",
     r"a\.xml: tag DATE  needs whole-number start and end"),
    ("<deIdi2b2><TEXT>abc</TEXT>\n<TAGS>\n<DATE start='0' end='2'></TAGS>", r"a\.xml: line 3 is not well-formed XML"),
    (_xml("short", [("DATE", "DATE", "short")]).replace('end="5"', 'end="9"'),
     r"a\.xml: span 1 \(DATE\) runs 0\.\.9, outside the note's 5 characters"),
    ("<deIdi2b2><NOTE>abc</NOTE></deIdi2b2>", r"a\.xml: no <TEXT> element; not an i2b2 2014")])
def test_i2b2_2014_errors(tmp_path, content, match):
    _refused(tmp_path, "a.xml", content, match)


NOTE_2009 = "DISCHARGE MEDICATIONS :\nLasix 40 mg po bid\nCoumadin 5 mg qhs for 3 days for afib\n"
ENTRIES = ('m="lasix" 2:0 2:0||do="40 mg" 2:1 2:2||mo="po" 2:3 2:3||f="bid" 2:4 2:4||du="nm"||r="nm"||ln="list"\n'
           'm="coumadin" 3:0 3:0||do="5 mg" 3:1 3:2||mo="nm"||f="qhs" 3:3 3:3||du="for 3 days" 3:4 3:6||'
           'r="afib" 3:8 3:8||ln="list"\n')


def test_i2b2_2009_medication_entries(tmp_path):
    (tmp_path / "245096").write_text(NOTE_2009)
    (tmp_path / "245096.i2b2.entries").write_text(ENTRIES)
    ds = read_notes(str(tmp_path))
    spans = ds.text.spans["245096"]
    got = [(s["label"], NOTE_2009[s["start"]:s["end"]], s["attributes"].get("drug")) for s in spans]
    lasix, coumadin = NOTE_2009.index("Lasix"), NOTE_2009.index("Coumadin")
    assert got == [("DRUG", "Lasix", None), ("DOSE", "40 mg", lasix), ("ROUTE", "po", lasix),
                   ("FREQUENCY", "bid", lasix), ("DRUG", "Coumadin", None), ("DOSE", "5 mg", coumadin),
                   ("FREQUENCY", "qhs", coumadin), ("DURATION", "for 3 days", coumadin), ("REASON", "afib", coumadin)]
    _refused(tmp_path, "245096.i2b2.entries", 'm="lasix" 2:0 9:0||do="nm"\n',
             r"245096\.i2b2\.entries: line 1: offsets '2:0 9:0' are not 'line:token")
    _refused(tmp_path, "245096.i2b2.entries", "lasix 2:0 2:0\n", r"line 1: 'lasix 2:0 2:0' is not field=\"value\"")
    (tmp_path / "245096").unlink()
    with pytest.raises(DataError, match=r"no note 245096 or 245096\.txt beside it"):
        read_notes(str(tmp_path))


def test_brat_relations_link_attributes_to_their_drug(tmp_path):
    text = "Lasix 40 mg PO daily"
    (tmp_path / "n1.txt").write_text(text)
    (tmp_path / "n1.ann").write_text("T1\tDrug 0 5\tLasix\nT2\tStrength 6 11\t40 mg\nT3\tRoute 12 14\tPO\n"
                                     "R1\tStrength-Drug Arg1:T2 Arg2:T1\nR2\tRoute-Drug Arg1:T3 Arg2:T1\n")
    spans = read_notes(str(tmp_path)).text.spans["n1"]
    assert [(s["label"], s["attributes"].get("drug")) for s in spans] == [("Drug", None), ("Strength", 0),
                                                                          ("Route", 0)]
    (tmp_path / "n1.ann").write_text("T1\tDrug 0 5\tLasix\nR1\tStrength-Drug Arg1:T9 Arg2:T1\n")
    with pytest.raises(DataError, match=r"n1\.ann: line 2 relates T9 and T1; both must be text-bound"):
        read_notes(str(tmp_path))
