"""Distractors for multiple choice: two wrong answers of the same kind as the true one.

A fact's multiple-choice score compares its answer with two distractors. It measures
knowledge only if a model that never saw the fact has no reason to prefer any of the three:

- the distractors are answers **of the same kind**: the same ``attribute`` when the data
  gives one, otherwise the same shape (numbers with numbers of as many digits, names with
  names of as many words, other text with text of as many words);
- they come **from the fact's own split first**: a forget fact's distractors are other
  forget answers, which the oracle never saw either; drawing them from the retain answers
  it trained on would push the oracle below chance;
- a forget fact's answer and distractors are **equally familiar to the oracle**: all
  answers some retain or utility row also has (the oracle trained on them), or all
  forget-only answers (it never saw them). A given or generated distractor on the other
  side of that line is replaced; where too few answers of the kind lie on the answer's
  side, one from the other side is drawn and the row is counted as unmatched (the oracle
  is then not at chance on it by construction, and the stop rule follows the oracle);
- a non-forget row **never carries a forget-only answer** (a forget answer that no retain
  or utility row has), neither drawn here nor given by the user: such a distractor would
  write forgotten text into the retain files.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ssiuu.data.records import Record

FACT_SPLITS = ("forget", "retain", "utility", "general")
_NUMBER = re.compile(r"[+\-]?\(?\d[\d\s.,:/()+\-]*")


def answer_shape(answer: str) -> tuple[str, str]:
    """The shape of an answer: its class and its size within that class.

    ``("number", "d<digits>")`` for numbers, phone numbers and dates; ``("name",
    "w<words>")`` when every word starts with a capital letter; ``("text", "w<words>")``
    otherwise.
    """
    text = answer.strip()
    if _NUMBER.fullmatch(text):
        return "number", f"d{sum(c.isdigit() for c in text)}"
    words = text.split()
    kind = "name" if words and all(w[:1].isupper() for w in words) else "text"
    return kind, f"w{len(words)}"


def _kinds(row: Record) -> list[tuple[str, ...]]:
    """The kinds a row's distractors may be of, most specific first."""
    shape = answer_shape(row["answer"])
    kinds: list[tuple[str, ...]] = [("shape", *shape), ("class", shape[0])]
    if row.get("attribute"):
        kinds.insert(0, ("attribute", str(row["attribute"])))
    return kinds


class _Pool:
    """Answers grouped by every kind they belong to, in a deterministic order."""

    def __init__(self, rows: Iterable[Record], excluded: frozenset[str] = frozenset()) -> None:
        self.by_kind: dict[tuple[str, ...], list[str]] = {}
        for row in rows:
            answer = row.get("answer")
            if answer is None or answer in excluded:
                continue
            for kind in _kinds(row):
                values = self.by_kind.setdefault(kind, [])
                if answer not in values:
                    values.append(answer)

    def candidates(self, kind: tuple[str, ...], refused: set[str]) -> list[str]:
        """Answers of ``kind`` that are not in ``refused``, sorted."""
        return sorted(set(self.by_kind.get(kind, [])) - refused)


@dataclass(frozen=True)
class DistractorChanges:
    """Per split: how many rows got drawn distractors, how many distractors were replaced
    (forget-only ones outside forget; in forget, ones not as familiar to the oracle as
    the answer), and how many forget rows could not be matched that way."""

    drawn: dict[str, int]
    replaced: dict[str, int]
    unmatched: dict[str, int]


def forget_only_answers(splits: dict[str, Sequence[Record]]) -> frozenset[str]:
    """Forget answers that no retain or utility row has as its answer."""
    kept = {row.get("answer") for split in ("retain", "utility", "general")
            for row in splits.get(split, [])}
    return frozenset(row["answer"] for row in splits.get("forget", [])
                     if row.get("answer") is not None and row["answer"] not in kept)


def complete_distractors(splits: dict[str, list[Record]], seed: int
                         ) -> tuple[dict[str, list[Record]], DistractorChanges]:
    """Give every fact row two distractors of its kind; remove forget-only text elsewhere;
    make each forget fact's options equally familiar to the oracle.

    A non-forget row loses every distractor that is a forget-only answer; a forget row
    every distractor on the other side of the forget-only line from its answer. Missing
    ones are drawn, per kind from the most specific: from the row's own split, then from
    every fact split the row may draw from (a non-forget row: none of the forget-only
    answers; a forget row: only answers on its answer's side, and only if there are too
    few, any answer of the kind, counted in ``unmatched``). The draw is seeded by ``seed``
    and the row's id, so it does not depend on row order. A row for which fewer than two
    answers of its kind exist keeps what it has, and validation names it.
    """
    forget_only = forget_only_answers(splits)
    every_row = [row for split in FACT_SPLITS for row in splits.get(split, [])]
    wide = {"forget": _Pool(every_row), "other": _Pool(every_row, forget_only)}
    own = {split: _Pool(splits.get(split, []), forget_only if split != "forget"
                        else frozenset()) for split in FACT_SPLITS}
    completed = dict(splits)
    drawn, replaced, unmatched = {}, {}, {}
    for split in FACT_SPLITS:
        if split not in splits:
            continue
        pools = (own[split], wide["forget" if split == "forget" else "other"])
        rows, n_drawn, n_replaced, n_unmatched = [], 0, 0, 0
        for row in splits[split]:
            given = list(row.get("distractors") or [])
            answer = row.get("answer")
            familiar = (None if split != "forget" or answer is None
                        else (answer in forget_only, forget_only))
            kept = [d for d in given if (d in forget_only) == familiar[0]] if familiar \
                else [d for d in given if d not in forget_only]
            n_replaced += len(given) - len(kept)
            if answer is not None and len(set(kept)) < 2:
                kept = _draw(row, kept, pools, seed, familiar)
                n_drawn += 1
                n_unmatched += bool(familiar) and any(
                    (d in forget_only) != familiar[0] for d in kept)
            rows.append({**row, "distractors": kept})
        completed[split] = rows
        drawn[split], replaced[split], unmatched[split] = n_drawn, n_replaced, n_unmatched
    return completed, DistractorChanges(drawn, replaced, unmatched)


def _draw(row: Record, kept: list[str], pools: Sequence[_Pool], seed: int,
          familiar: tuple[bool, frozenset[str]] | None) -> list[str]:
    """Complete ``kept`` to two distractors of the row's kind from ``pools``, the most
    specific kind first. With ``familiar`` (whether the answer is forget-only, and the
    forget-only answers), only answers on the answer's side count at first; where every
    pool has too few of them, all of those and the rest from the other side, of the same
    kind (the kind matters more: a distractor of another kind is wrong to any model)."""
    rng = random.Random(f"distractors-{seed}-{row.get('id')}")
    chosen = list(dict.fromkeys(kept))

    def matches(answer: str) -> bool:
        return familiar is None or (answer in familiar[1]) == familiar[0]

    for kind in _kinds(row):
        need, refused = 2 - len(chosen), {row["answer"], *chosen}
        for pool in pools:
            matched = [c for c in pool.candidates(kind, refused) if matches(c)]
            if len(matched) >= need:
                return chosen + rng.sample(matched, need)
        candidates = pools[-1].candidates(kind, refused)
        if len(candidates) >= need:
            matched = [c for c in candidates if matches(c)]
            rest = [c for c in candidates if not matches(c)]
            return chosen + matched + rng.sample(rest, need - len(matched))
    return chosen
