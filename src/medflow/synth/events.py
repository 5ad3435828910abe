"""SYNTHETIC event sequences: a recurrent language model over patients' MEDS events, sampled into new patients.

Each real training patient becomes one token sequence: its static codes (sex, race), then its timed events in
order. Time advances by **gap tokens** (hand-set bins: 0, 10 min, 1 h, 2 h, 6 h, 12 h, 1, 2, 3, 5, 7, 10, 14,
21, 30, 45, 60, 90, 180 days, 1, 2, 5, 10 years and over, so that "within 30 days" keeps its boundary); the
time from birth to the first other event is an **age token** in whole years; a numeric event's value is a
**decile token** of that code's training values, right after the code. A GRU (embedding, `layers` x `hidden`,
softmax over the vocabulary) learns the next token on the core Trainer; sampling draws tokens until the end
token (or `max_len`), times uniformly within their gap bin, values uniformly between the code's deciles; the
first event after birth at the calendar time of a real patient's first event (a month of jitter) and the birth
that many years before, as the age token says. A grammar masks impossible next tokens (an age only right after
the birth, a value only and always right after a numeric code, no two gaps in a row). Codes seen in fewer than
`min_count` training patients are left out of the vocabulary (rare codes would identify patients).

A sampled patient whose encounters do not open and close in order (an END without its START, a START inside
an open encounter, an encounter left open) is structurally invalid: it is dropped and counted, never repaired
silently. The output is a MEDS folder marked SYNTHETIC (`metadata/dataset.json` `medflow.synthetic`, a
`SYNTHETIC.txt`), which medflow reads back as synthetic event data.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import torch

from medflow.errors import DataError
from medflow.models.language import TokenLM, fit_token_lm, pad_tokens, sample_token_lm

__all__ = ["EventSequenceGenerator", "GAP_EDGES_H"]

GAP_EDGES_H = [0.0, 1 / 6, 1, 2, 6, 12, 24, 48, 72, 120, 168, 240, 336, 504, 720, 1080, 1440, 2160, 4320, 8766,
               17532, 43830, 87660, 175320]  # hours: the upper edge of each gap bin (the last bin is open)
_SPECIAL = ["<pad>", "<bos>", "<eos>"]
_START, _END = "ENCOUNTER//INPATIENT//START", "ENCOUNTER//INPATIENT//END"


class EventSequenceGenerator:
    """Fit on `EventData` of real training patients, sample `n` SYNTHETIC patients as MEDS events."""

    def __init__(self, d: int = 64, hidden: int = 256, layers: int = 1, dropout: float = 0.1, max_len: int = 1024,
                 min_count: int = 5) -> None:
        self.d, self.hidden, self.layers, self.dropout = d, hidden, layers, dropout
        self.max_len, self.min_count = max_len, min_count
        self.vocab: list[str] = []
        self.index: dict[str, int] = {}
        self.deciles: dict[str, np.ndarray] = {}
        self.births: np.ndarray = np.zeros(0)
        self.module: TokenLM | None = None
        self.n_truncated = 0

    # ---- tokens -----------------------------------------------------------------------------------------------
    @staticmethod
    def _gap(hours: float) -> str:
        return f"<gap:{int(np.searchsorted(GAP_EDGES_H, hours, side='left'))}>"

    def _build_vocab(self, ev: pl.DataFrame) -> None:
        per_patient = ev.group_by("code").agg(pl.col("subject_id").n_unique().alias("n"))
        codes = sorted(per_patient.filter(pl.col("n") >= self.min_count)["code"].to_list())
        numeric = ev.filter(pl.col("numeric_value").is_not_null() & pl.col("code").is_in(codes))
        self.deciles = {c: np.quantile(g["numeric_value"].to_numpy().astype(float), np.linspace(0, 1, 11))
                        for (c,), g in numeric.group_by("code")}
        self.vocab = (_SPECIAL + [f"<gap:{i}>" for i in range(len(GAP_EDGES_H) + 1)]
                      + [f"<age:{a}>" for a in range(121)] + [f"<v:{k}>" for k in range(10)] + codes)
        self.index = {t: i for i, t in enumerate(self.vocab)}

    def _tokens(self, g: pl.DataFrame) -> list[int]:
        out = [self.index["<bos>"]]
        prev, birth = None, None
        for code, t, v in zip(g["code"].to_list(), g["time"].to_list(), g["numeric_value"].to_list(), strict=True):
            if code not in self.index:
                continue
            if t is not None:
                if code == "MEDS_BIRTH":
                    birth = t
                elif prev is not None and prev == birth:
                    out.append(self.index[f"<age:{min(120, int((t - birth).days // 365.25))}>"])
                elif prev is not None and t > prev:
                    out.append(self.index[self._gap((t - prev).total_seconds() / 3600)])
                prev = t
            out.append(self.index[code])
            if v is not None and code in self.deciles and not math.isnan(v):
                k = int(np.clip(np.searchsorted(self.deciles[code][1:-1], v, side="right"), 0, 9))
                out.append(self.index[f"<v:{k}>"])
        return out + [self.index["<eos>"]]

    # ---- fitting ----------------------------------------------------------------------------------------------
    def fit(self, events: pl.DataFrame, seed: int = 0, train: Any = None) -> EventSequenceGenerator:
        """Learn from the events (subject_id, time, code, numeric_value) of the real training patients."""
        from medflow.train.trainer import TrainConfig

        if events.height == 0:
            raise DataError("no training events to learn from.")
        ev = events.sort(["subject_id", "time"], nulls_last=False, maintain_order=True)
        self._build_vocab(ev)
        # the calendar time of each patient's first event after birth: a sampled patient's age token places it
        # there, and its birth that many years before (so calendar time and age keep their joint distribution)
        timed = ev.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH"))
        firsts = timed.group_by("subject_id").agg(pl.col("time").min())["time"]
        self.births = firsts.dt.epoch("us").to_numpy() if firsts.len() else np.zeros(1, dtype=np.int64)
        seqs = [self._tokens(g) for _, g in ev.group_by("subject_id", maintain_order=True)]
        self.n_truncated = sum(len(s) > self.max_len for s in seqs)
        seqs = [s[: self.max_len] for s in seqs]
        x, lengths = pad_tokens(seqs)
        torch.manual_seed(seed)
        self.module = TokenLM(len(self.vocab), self.d, self.hidden, self.layers, self.dropout)
        cfg = train or TrainConfig(max_epochs=20, patience=3, lr=3e-3, batch_size=32, progress=False)
        fit_token_lm(self.module, x, lengths, cfg, seed)
        return self

    # ---- sampling ---------------------------------------------------------------------------------------------
    def grammar(self) -> torch.Tensor:
        """allowed[previous, next]: an age only right after the birth, a value only right after a numeric code
        (and always there), never two gaps in a row, never <pad> or <bos>."""
        kind = np.array([t[:3] if t.startswith("<") else ("num" if t in self.deciles else "code") for t in self.vocab])
        v = len(self.vocab)
        allowed = np.ones((v, v), dtype=bool)
        allowed[:, :2] = False
        allowed[:, kind == "<ag"] = False
        allowed[:, kind == "<v:"] = False
        allowed[np.ix_(kind == "<ga", kind == "<ga")] = False
        birth = self.index.get("MEDS_BIRTH")
        if birth is not None:
            allowed[birth] = kind == "<ag"
        allowed[kind == "num"] = kind == "<v:"
        return torch.as_tensor(allowed)

    def sample_tokens(self, n: int, seed: int = 0, batch: int = 256) -> list[list[str]]:
        assert self.module is not None
        rows = sample_token_lm(self.module, n, self.index["<bos>"], self.index["<eos>"], self.max_len, seed,
                               self.grammar(), batch)
        return [[self.vocab[t] for t in r] for r in rows]

    def decode(self, tokens: list[str], subject: int, rng: np.random.Generator) -> tuple[list[tuple], bool]:
        """One sampled patient as MEDS rows (subject, time, code, value), and whether it is structurally valid."""
        first = datetime(1970, 1, 1) + timedelta(microseconds=int(rng.choice(self.births))) + timedelta(
            days=float(rng.uniform(-30, 30)))
        birth = first - timedelta(days=365.25 * 65)  # replaced by the age token's
        rows: list[tuple] = []
        now: datetime | None = None
        open_enc, valid, birth_row = False, True, None
        for tok in tokens:
            if tok.startswith("<gap:") and now is not None:
                k = int(tok[5:-1])
                lo = GAP_EDGES_H[k - 1] if k > 0 else 0.0
                hi = GAP_EDGES_H[k] if k < len(GAP_EDGES_H) else GAP_EDGES_H[-1] * 2
                now += timedelta(hours=float(rng.uniform(lo, hi)) if k > 0 else 0.0)
            elif tok.startswith("<age:") and now is not None:
                now = first
                if birth_row is not None:
                    born = first - timedelta(days=365.25 * (int(tok[5:-1]) + float(rng.uniform())))
                    rows[birth_row] = (subject, born, "MEDS_BIRTH", None)
            elif tok.startswith("<v:"):
                if rows and rows[-1][2] in self.deciles and rows[-1][3] is None:
                    q, k = self.deciles[rows[-1][2]], int(tok[3:-1])
                    rows[-1] = (*rows[-1][:3], float(rng.uniform(q[k], q[k + 1])))
            elif not tok.startswith("<"):
                if tok == "MEDS_BIRTH":
                    now, birth_row = birth, len(rows)
                if tok == _START:
                    valid &= not open_enc
                    open_enc = True
                elif tok == _END:
                    valid &= open_enc
                    open_enc = False
                rows.append((subject, now, tok, None))
        return rows, valid and not open_enc

    def sample(self, n: int, seed: int = 0) -> tuple[pl.DataFrame, dict[str, int]]:
        """`n` sampled patients as MEDS events (subject ids 1..), the invalid ones dropped; and the counts."""
        rng = np.random.default_rng(seed)
        kept, invalid = [], 0
        for i, toks in enumerate(self.sample_tokens(n, seed)):
            rows, ok = self.decode(toks, i + 1, rng)
            if ok and any(r[1] is not None for r in rows):
                kept += rows
            else:
                invalid += 1
        frame = pl.DataFrame(kept, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                           "numeric_value": pl.Float32}, orient="row")
        return frame, {"sampled": n, "invalid_dropped": invalid, "kept": n - invalid}


def _event_source(source: Any) -> Any:
    """EventData from a MEDS folder, the built-in `ehr_sim` (2,000 simulated patients, seed 0) or EventData."""
    from pathlib import Path

    from medflow.data.sources.meds import EventData, read_meds
    from medflow.errors import ConfigError

    if isinstance(source, EventData):
        return source
    if str(source) == "ehr_sim":
        from medflow.data.ehr import simulated_ehr

        return simulated_ehr(2000, 0).events
    p = Path(str(source))
    if p.is_dir() and (p / "data").is_dir():
        return read_meds(p)
    raise ConfigError(f"{source}: event sequences are synthesized from a MEDS folder (data/ and metadata/) or the "
                      "built-in ehr_sim.")


def _sequence_stats(real: pl.DataFrame, syn: pl.DataFrame) -> dict[str, Any]:
    """Per-patient shape of the sequences: events and admissions per patient, readmissions within 30 days among
    consecutive admissions, and the correlation of code frequencies (per patient, log scale)."""
    def stats(ev: pl.DataFrame) -> dict[str, float]:
        per = ev.group_by("subject_id").agg(pl.len().alias("events"), (pl.col("code") == _START).sum().alias("adm"))
        starts = ev.filter(pl.col("code") == _START).sort(["subject_id", "time"])
        ends = ev.filter(pl.col("code") == _END).sort(["subject_id", "time"])
        gaps = []
        if starts.height and ends.height:  # k-th START with the k-th END, then the gap to the next START
            k = pl.int_range(pl.len()).over("subject_id").alias("k")
            s = starts.with_columns(k, pl.col("time").shift(-1).over("subject_id").alias("next"))
            pairs = s.join(ends.with_columns(k), on=["subject_id", "k"], how="inner", suffix="_end")
            gaps = ((pairs["next"] - pairs["time_end"]).dt.total_seconds() / 86400).drop_nulls().to_numpy()
        return {"patients": per.height, "events_per_patient": float(per["events"].mean()),
                "admissions_per_patient": float(per["adm"].mean()),
                "readmitted_within_30d": float(np.mean(np.asarray(gaps) < 30)) if len(gaps) else float("nan")}

    freq = {name: ev.group_by("code").agg(pl.len().alias(name)) for name, ev in (("real", real), ("syn", syn))}
    both = freq["real"].join(freq["syn"], on="code", how="full", coalesce=True).fill_null(0)
    r = np.log1p(both["real"].to_numpy() / max(1, real["subject_id"].n_unique()))
    s = np.log1p(both["syn"].to_numpy() / max(1, syn["subject_id"].n_unique()))
    return {"real": stats(real), "synthetic": stats(syn),
            "code_frequency_correlation": float(np.corrcoef(r, s)[0, 1]) if len(r) > 1 else float("nan")}


def synthesize_events(source: Any, n: int | None = None, output: Any = None, cohort: str = "readmission_30d",
                      holdout: float = 0.2, seed: int = 0, params: dict[str, Any] | None = None,
                      train: Any = None) -> dict[str, Any]:
    """Fit the sequence generator on the real training patients of `source` (a MEDS folder, `ehr_sim` or
    EventData), sample `n` patients (default: as many as the training patients) and measure them: the sequences'
    shape, and on the cohort's prediction samples as count tables (the same code vocabulary for all three),
    column shapes and pairs, DCR, membership inference and TSTR against TRTR for the cohort's label. Writes the
    MEDS folder (`output`, marked SYNTHETIC) with `<output>.fidelity.json` and `<output>.report.html` beside it."""
    import json
    import time
    from pathlib import Path

    from medflow.artifacts import write_text
    from medflow.data.cohort import get_cohort
    from medflow.data.ehr import event_dataset
    from medflow.data.sources.meds import EventData, write_meds
    from medflow.errors import ConfigError
    from medflow.study.data import event_counts_table
    from medflow.synth.fidelity import fidelity_report
    from medflow.synth.report import report_html

    mark = "Sampled by medflow's event-sequence generator. Not real patients.\n"
    earlier = Path(output) / "SYNTHETIC.txt" if output is not None else None
    if earlier is not None and earlier.parent.exists() and not (earlier.exists() and earlier.read_text() == mark):
        raise ConfigError(f"-o {output}: the folder exists and is not an earlier synthetic output; choose a new "
                          "folder (it is replaced whole).")
    data = _event_source(source)
    ev = data.events
    subjects = ev["subject_id"].unique().sort().to_numpy()
    if data.splits is not None and (data.splits["split"] == "held_out").any():
        held = data.splits.filter(pl.col("split") == "held_out")["subject_id"].to_numpy()
    else:
        if not 0 < holdout < 1:
            raise ConfigError(f"--holdout must be between 0 and 1, got {holdout}.")
        held = np.random.default_rng(seed).choice(subjects, max(1, round(holdout * len(subjects))), replace=False)
    is_held = pl.col("subject_id").is_in(pl.Series(held).implode())
    real_train, real_held = ev.filter(~is_held), ev.filter(is_held)
    n_train = real_train["subject_id"].n_unique()
    if n_train < 10 or real_held.height == 0:
        raise DataError(f"{data.source}: {n_train} training and {real_held['subject_id'].n_unique()} held-out "
                        "patients; synthesizing needs at least 10 training patients and some held-out ones.")
    n = n_train if n is None else n
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}.")
    gen = EventSequenceGenerator(**(params or {}))
    t0 = time.perf_counter()
    gen.fit(real_train, seed, train)
    fit_s = time.perf_counter() - t0
    syn_ev, counts = gen.sample(n, seed + 1)
    meta = {"dataset_name": "medflow_synthetic_events", "medflow": {
        "synthetic": True, "generator": "gru event sequences (medflow.synth.events)", "seed": seed,
        "trained_on": str(data.source), "note": "SYNTHETIC DATA sampled from a generator; not patients."}}
    syn = EventData(events=syn_ev, metadata=meta, source="synthetic", synthetic=True)
    label = get_cohort(cohort).name
    parts = {k: event_dataset(EventData(events=e, source=data.source, synthetic=data.synthetic), cohort)
             for k, e in (("train", real_train), ("held", real_held))}
    parts["syn"] = event_dataset(syn, cohort)
    tables = event_counts_table(parts["train"], 5, others=[parts["held"], parts["syn"]])
    types = {c: t for c, t in tables[0].feature_types.items() if c not in ("subject_id",)}
    from medflow.data.dataset import FeatureType

    types[label] = FeatureType.BINARY
    frames = [t.frame[list(types)] for t in tables]
    import warnings

    with warnings.catch_warnings(), np.errstate(invalid="ignore"):  # constant count columns have no correlation
        warnings.simplefilter("ignore", RuntimeWarning)
        report = fidelity_report(frames[0], frames[1], frames[2], types, label, seed)
    report.update(model="sequence", fit_seconds=fit_s, source=str(data.source), synthetic=True, seed=seed,
                  real_data_synthetic=bool(data.synthetic), cohort=label, patients=counts, train_patients=n_train,
                  holdout_patients=int(real_held["subject_id"].n_unique()),
                  truncated_training_patients=gen.n_truncated, vocabulary=len(gen.vocab),
                  sequences=_sequence_stats(real_train, syn_ev))
    if output is not None:
        out = Path(output)
        write_meds(syn, out, overwrite=True)
        (out / "SYNTHETIC.txt").write_text(mark)
        write_text(out.with_name(out.name + ".fidelity.json"), json.dumps(report, indent=1, default=str))
        write_text(out.with_name(out.name + ".report.html"), report_html(report, frames[2]))
    report["events"] = syn_ev
    return report
