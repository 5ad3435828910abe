"""Finding mentions and their assertion status: a lexicon target matcher and the ConText algorithm
(Harkema et al. 2009; Chapman et al. 2001 NegEx), written here so its rules are data, not code.

`find_mentions(text, targets)` returns every mention of a target phrase (longest match wins), each with its
sentence and its ConText assertion: present, negated, possible, historical, family or hypothetical. A trigger
("no", "denies", "no evidence of", "cannot exclude", "history of", "mother", "if"...) governs the mentions in
its scope: forward triggers to the end of the sentence, backward triggers to its start, cut at a termination
term ("but", "however", "which", ";") or at another trigger. Pseudo-triggers ("no change", "not only", "gram
negative") match first and govern nothing, so "no change in the small effusion" stays present. The rule set
is `DEFAULT_RULES`; pass your own (phrase, category, direction) list to change it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Mention", "find_mentions", "sentences", "DEFAULT_RULES", "TERMINATIONS", "ASSERTIONS"]

ASSERTIONS = ("present", "negated", "possible", "historical", "family", "hypothetical")

# (phrase, category, direction): direction "forward" (governs what follows), "backward" (what precedes) or
# "both"; category "pseudo" governs nothing (it only stops a shorter trigger inside it from matching)
_NEG_FWD = ["no", "not", "without", "denies", "denied", "denying", "negative for", "free of", "no evidence of",
            "no signs of", "no sign of", "no findings of", "no suspicious", "absence of", "ruled out", "no new",
            "no focal", "no acute", "no definite", "no large", "no significant", "never",
            "nor", "resolution of", "resolved", "fails to reveal", "did not show", "does not show", "no other",
            "clear of", "negative"]
_NEG_BWD = ["is ruled out", "are ruled out", "has been ruled out", "not seen", "is not seen", "are not seen",
            "not identified", "not visualized", "absent", "is absent", "are absent", "has resolved", "have resolved",
            "resolved", "not present", "is not present", "are not present", "unlikely", "is negative",
            "not demonstrated", "no longer present", "no longer seen", "free", "excluded"]
_POSSIBLE_FWD = ["possible", "possibly", "probable", "probably", "may represent", "may be", "might be",
                 "could represent", "could be", "can not exclude", "cannot exclude", "cannot be excluded",
                 "not excluded", "suspicious for", "suspicion of", "concerning for", "concern for", "questionable",
                 "question of", "suggestive of", "suggests", "suggesting", "likely", "differential includes",
                 "versus", "vs", "equivocal", "borderline", "r/o", "rule out", "evaluate for", "evaluation for",
                 "worrisome for"]
_POSSIBLE_BWD = ["is not excluded", "cannot be excluded", "can not be excluded", "not excluded", "is possible",
                 "is suspected", "is questioned", "not ruled out", "is likely", "are likely", "could be present",
                 "is not entirely excluded"]
_HIST = ["history of", "hx of", "h/o", "status post", "s/p", "in the past", "past medical history",
         "previously treated", "remote history"]
_FAMILY = ["mother", "father", "sister", "brother", "family history", "maternal", "paternal", "aunt", "uncle",
           "grandmother", "grandfather", "son", "daughter", "fhx"]
_HYPO = ["if", "in case", "should", "return if", "watch for", "monitor for", "to assess for", "to exclude",
         "in order to", "be alert for"]
_PSEUDO = ["no change", "no increase", "no significant change", "no interval change", "not only", "not necessarily",
           "gram negative", "no further", "not certain whether", "without difficulty", "not cause", "not drain",
           "no suspicious change", "without change", "negative for change", "no new change"]

DEFAULT_RULES: list[tuple[str, str, str]] = (
    [(p, "negated", "forward") for p in _NEG_FWD] + [(p, "negated", "backward") for p in _NEG_BWD]
    + [(p, "possible", "forward") for p in _POSSIBLE_FWD] + [(p, "possible", "backward") for p in _POSSIBLE_BWD]
    + [(p, "historical", "forward") for p in _HIST] + [(p, "family", "forward") for p in _FAMILY]
    + [(p, "hypothetical", "forward") for p in _HYPO] + [(p, "pseudo", "both") for p in _PSEUDO])
TERMINATIONS = ["but", "however", "although", "though", "except", "aside from", "apart from", "nevertheless",
                "yet", "which", "whereas", "otherwise", "presumably", "now", "there is", "there are",
                "secondary to", "due to", "remains", ";", ":"]
_PRIORITY = {"negated": 5, "family": 4, "hypothetical": 3, "historical": 2, "possible": 1}


@dataclass
class Mention:
    """A target mention: its label, character span in the note, the matched text, the sentence span, the
    ConText assertion and the trigger(s) that decided it."""

    label: str
    start: int
    end: int
    text: str
    sentence: tuple[int, int]
    assertion: str = "present"
    triggers: list[str] = field(default_factory=list)
    categories: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "start": self.start, "end": self.end, "text": self.text,
                "assertion": self.assertion, "triggers": "; ".join(self.triggers)}


_SENT_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n\s*\n|\n(?=\s*[-*\d]+[.)]?\s)")


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans: a break after . ! ? followed by space (not inside numbers like 1.5), blank lines and
    list items."""
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        if m.start() > start:
            out.append((start, m.start()))
        start = m.end()
    if start < len(text):
        out.append((start, len(text)))
    return out


def _phrase_regex(phrases: list[str]) -> re.Pattern:
    """One alternation, longest phrases first, on word boundaries (for phrases that start / end with a word
    character), any run of spaces between words."""
    parts = sorted({p.lower().strip() for p in phrases if p.strip()}, key=len, reverse=True)
    alts = [(r"(?<![\w/])" if p[0].isalnum() else "") + r"\s+".join(re.escape(w) for w in p.split())
            + (r"(?![\w/])" if p[-1].isalnum() else "") for p in parts]
    return re.compile("|".join(alts), flags=re.I)


class _Compiled:
    def __init__(self, targets: dict[str, list[str]], rules: list[tuple[str, str, str]],
                 terminations: list[str]) -> None:
        self.target_of = {p.lower().strip(): lab for lab, ps in targets.items() for p in ps}
        self.targets = _phrase_regex(list(self.target_of))
        self.rule_of: dict[str, list[tuple[str, str]]] = {}
        for p, cat, direction in rules:
            self.rule_of.setdefault(" ".join(p.lower().split()), []).append((cat, direction))
        self.rules = _phrase_regex([p for p, _, _ in rules])
        self.term = _phrase_regex(terminations)


_CACHE: dict[int, _Compiled] = {}


def find_mentions(text: str, targets: dict[str, list[str]], rules: list[tuple[str, str, str]] | None = None,
                  terminations: list[str] | None = None) -> list[Mention]:
    """Every target mention in `text` with its ConText assertion (see the module docstring)."""
    rules = DEFAULT_RULES if rules is None else rules
    terminations = TERMINATIONS if terminations is None else terminations
    key = hash((tuple((k, tuple(v)) for k, v in sorted(targets.items())), tuple(rules), tuple(terminations)))
    comp = _CACHE.get(key)
    if comp is None:
        comp = _CACHE[key] = _Compiled(targets, rules, terminations)
    out: list[Mention] = []
    for s0, s1 in sentences(text):
        sent = text[s0:s1]
        found = [Mention(comp.target_of[" ".join(m.group().lower().split())], s0 + m.start(), s0 + m.end(),
                         m.group(), (s0, s1)) for m in comp.targets.finditer(sent)]
        if not found:
            continue
        taken = [(t.start - s0, t.end - s0) for t in found]
        trig = [(m.start(), m.end(), " ".join(m.group().lower().split())) for m in comp.rules.finditer(sent)
                if not any(a < m.end() and m.start() < b for a, b in taken)]
        stops = sorted([m.start() for m in comp.term.finditer(sent)] + [a for a, _, _ in trig])
        for a, b, phrase in trig:
            for cat, direction in comp.rule_of[phrase]:
                if cat == "pseudo":
                    continue
                if direction in ("forward", "both"):
                    end = next((s for s in stops if s >= b), len(sent))
                    scope = (b, end)
                else:
                    begin = max([s for s in stops if s < a and s not in (a,)] + [0])
                    scope = (begin, a)
                for t in found:
                    if scope[0] <= t.start - s0 and t.end - s0 <= scope[1] + 0:
                        t.categories.add(cat)
                        t.triggers.append(f"{phrase} ({cat})")
        for t in found:
            if t.categories:
                t.assertion = max(t.categories, key=lambda c: _PRIORITY[c])
        out.extend(found)
    return out
