"""SYNTHETIC event sequences (`medflow synthesize MEDS --model sequence`): the tokens round-trip a real patient,
the generator learns a simulated cohort, every written patient is structurally valid and marked SYNTHETIC, and the
fidelity / privacy report covers the sequences and the cohort's samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from medflow.cli import app
from medflow.data.simulate.ehr import simulate_ehr
from medflow.data.sources.meds import read_meds
from medflow.errors import ConfigError
from medflow.synth.events import GAP_EDGES_H, EventSequenceGenerator


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return simulate_ehr(tmp_path_factory.mktemp("ehr") / "meds", patients=300, seed=3)


def test_tokens_round_trip_a_real_patient(cohort):
    """Encode a real patient, decode the tokens: the same codes in the same order, values within their deciles,
    each gap within its bin, and the encounters open and close in order."""
    ev = read_meds(cohort).events
    gen = EventSequenceGenerator(min_count=1)
    gen._build_vocab(ev)
    sid = ev.filter(pl.col("code") == "ENCOUNTER//INPATIENT//START")["subject_id"][0]
    real = ev.filter(pl.col("subject_id") == sid)
    first = real.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH"))["time"]
    gen.births = first.sort().head(1).dt.epoch("us").to_numpy()  # its own first event's calendar time
    toks = [gen.vocab[t] for t in gen._tokens(real)[1:-1]]
    rows, valid = gen.decode(toks, 1, np.random.default_rng(0))
    assert valid and [r[2] for r in rows] == real["code"].to_list()
    times, out_t = real["time"].to_list(), [r[1] for r in rows]
    for a, b, c, d in zip(times[:-1], times[1:], out_t[:-1], out_t[1:], strict=True):
        if a is None or b is None or c is None or d is None or a == times[2]:
            continue  # static codes, and the birth (placed by the age token)
        bins = [int(np.searchsorted(GAP_EDGES_H, (y - x).total_seconds() / 3600, side="left")) for x, y in
                ((a, b), (c, d))]
        assert bins[0] == bins[1]
    for (_, _, code, v), value in zip(rows, real["numeric_value"].to_list(), strict=True):
        if value is not None and code in gen.deciles:
            q = gen.deciles[code]
            k = int(np.clip(np.searchsorted(q[1:-1], value, side="right"), 0, 9))
            assert q[k] <= v <= q[k + 1]


def test_cli_synthesizes_event_sequences(cohort, tmp_path):
    out = tmp_path / "syn_meds"
    res = CliRunner().invoke(app, ["synthesize", str(cohort), "--model", "sequence", "-o", str(out), "--epochs", "15",
                                   "-n", "200"])
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC event sequences" in res.output and "code frequency correlation" in res.output
    syn = read_meds(out)
    assert syn.synthetic and (out / "SYNTHETIC.txt").exists()
    rep = json.loads((tmp_path / "syn_meds.fidelity.json").read_text())
    assert rep["patients"]["kept"] + rep["patients"]["invalid_dropped"] == 200
    assert syn.n_subjects == rep["patients"]["kept"] >= 100
    html = (tmp_path / "syn_meds.report.html").read_text()
    assert "SYNTHETIC DATA" in html and "Event sequences" in html
    # every written patient opens and closes its encounters in order, and each numeric code carries a value
    for _, g in syn.events.group_by("subject_id"):
        enc = [c for c in g["code"].to_list() if c.startswith("ENCOUNTER//")]
        assert enc == ["ENCOUNTER//INPATIENT//START", "ENCOUNTER//INPATIENT//END"] * (len(enc) // 2)
    labs = syn.events.filter(pl.col("code").str.starts_with("LOINC//"))
    assert labs["numeric_value"].null_count() == 0
    sq = rep["sequences"]
    # learned, not copied: the code mix and the visit shape follow the real patients, no record is a copy
    assert sq["code_frequency_correlation"] > 0.9
    assert 0.5 < sq["synthetic"]["events_per_patient"] / sq["real"]["events_per_patient"] < 2
    assert abs(sq["synthetic"]["admissions_per_patient"] - sq["real"]["admissions_per_patient"]) < 1.0
    assert rep["dcr"]["exact_copies"] == 0 and rep["membership_auroc"] < 0.65
    assert set(syn.events["code"].unique()) <= set(read_meds(cohort).events["code"].unique())


def test_sequence_needs_event_data(cohort, tmp_path):
    from medflow.synth import synthesize

    with pytest.raises(ConfigError, match="not an earlier synthetic output"):  # never replaces real data
        synthesize(str(cohort), model="sequence", output=cohort)
    assert read_meds(cohort).n_subjects == 300

    with pytest.raises(ConfigError, match="MEDS folder"):
        synthesize("breast_cancer", model="sequence", output=tmp_path / "x")
    with pytest.raises(ConfigError, match="--model sequence"):
        synthesize("ehr_sim", model="tvae", output=tmp_path / "x.parquet")
    assert not Path(tmp_path / "x").exists()
