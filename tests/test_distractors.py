"""Distractors of the same kind, drawn from the fact's own split, never forget-only text
outside the forget split."""

import math
import random
import statistics
from collections import Counter

import pytest

from ssiuu.config.params import GeneratorParams
from ssiuu.data.distractors import answer_shape, complete_distractors, forget_only_answers
from ssiuu.data.generator import generate_people_facts, generate_utility, person_names


@pytest.mark.parametrize(("answer", "shape"), [
    ("1987", ("number", "d4")), ("555-0123", ("number", "d7")), ("2001-03-04", ("number", "d8")),
    ("+44 20 7946", ("number", "d8")), ("Oslo", ("name", "w1")), ("Ann Lee", ("name", "w2")),
    ("a software engineer", ("text", "w3")), ("blue", ("text", "w1")),
])
def test_answer_shapes(answer, shape):
    assert answer_shape(answer) == shape


def _fact(fid: str, answer: str, attribute: str | None = None, distractors=None) -> dict:
    return {"id": fid, "subject": f"s-{fid}", "attribute": attribute, "question": f"q {fid}?",
            "answer": answer, "distractors": distractors}


def _user_splits() -> dict:
    """All answers distinct, no attribute: names, years and phone numbers mixed."""
    forget = [_fact("f1", "Ann Lee"), _fact("f2", "1961"), _fact("f3", "555-0101"),
              _fact("f4", "Bo Chan"), _fact("f5", "1972"), _fact("f6", "555-0202"),
              _fact("f7", "Cy Diaz"), _fact("f8", "1983"), _fact("f9", "555-0303")]
    retain = [_fact("r1", "Di Eng"), _fact("r2", "1994"), _fact("r3", "555-0404"),
              _fact("r4", "Ed Fox"), _fact("r5", "1999"), _fact("r6", "555-0505"),
              _fact("r7", "Fa Gu"), _fact("r8", "1950"), _fact("r9", "555-0606")]
    return {"forget": forget, "retain": retain, "utility": [], "benign": []}


def test_without_attribute_distractors_share_the_answers_shape_and_split():
    splits, changes = complete_distractors(_user_splits(), seed=0)
    answers = {split: {row["answer"] for row in rows} for split, rows in splits.items()}
    for split in ("forget", "retain"):
        for row in splits[split]:
            assert len(set(row["distractors"])) == 2 and row["answer"] not in row["distractors"]
            assert all(answer_shape(d) == answer_shape(row["answer"])
                       for d in row["distractors"]), row
            assert set(row["distractors"]) <= answers[split]  # its own split first
    assert changes.drawn == {"forget": 9, "retain": 9, "utility": 0}


def test_the_attribute_comes_before_the_shape():
    splits = {"forget": [_fact("f1", "Oslo", "city"), _fact("f2", "Lima", "city"),
                         _fact("f3", "Kyiv", "city"), _fact("f4", "Acme", "employer")],
              "retain": [_fact("r1", "Pune", "city"), _fact("r2", "Hooli", "employer"),
                         _fact("r3", "Globex", "employer")]}
    completed, _ = complete_distractors(splits, seed=0)
    cities = {"Oslo", "Lima", "Kyiv"}
    assert set(completed["forget"][0]["distractors"]) == cities - {"Oslo"}
    # one forget employer: the other two come from the other splits' employers
    assert set(completed["forget"][3]["distractors"]) == {"Hooli", "Globex"}


def test_a_forget_fact_s_options_are_equally_familiar_to_the_oracle():
    splits = {"forget": [_fact("f1", "Oslo", "city", ["Pune", "Rome"]),  # forget-only answer
                         _fact("f2", "Lima", "city", ["Kyiv", "Rome"]),  # retain has Lima
                         _fact("f3", "Kyiv", "city"), _fact("f4", "Acme", "employer"),
                         _fact("f5", "Doha", "city"), _fact("f6", "Riga", "city")],
              "retain": [_fact("r1", "Pune", "city"), _fact("r2", "Lima", "city"),
                         _fact("r3", "Rome", "city"), _fact("r4", "Bern", "city"),
                         _fact("r5", "Hooli", "employer"), _fact("r6", "Globex", "employer")]}
    forget_only = {"Oslo", "Kyiv", "Acme", "Doha", "Riga"}
    assert forget_only_answers(splits) == forget_only
    completed, changes = complete_distractors(splits, seed=0)
    options = {row["id"]: set(row["distractors"]) for row in completed["forget"]}
    assert options["f1"] <= forget_only - {"Oslo"} and len(options["f1"]) == 2
    assert options["f3"] <= forget_only - {"Kyiv"} and len(options["f3"]) == 2
    # f2's answer is one the oracle saw: Kyiv (forget-only) makes way for a seen city
    assert "Rome" in options["f2"] and options["f2"] <= {"Rome", "Pune", "Bern"}
    # no other employer is forget-only: Acme's come from retain, and it is counted
    assert options["f4"] == {"Hooli", "Globex"}
    assert changes.replaced == {"forget": 3, "retain": 0}
    assert changes.unmatched == {"forget": 1, "retain": 0}


def test_too_few_on_the_answer_s_side_takes_them_all_then_the_other_side():
    splits = {"forget": [_fact("f1", "Oslo", "city"), _fact("f2", "Kyiv", "city")],
              "retain": [_fact("r1", "Pune", "city"), _fact("r2", "Rome", "city")]}
    completed, changes = complete_distractors(splits, seed=0)
    first = completed["forget"][0]["distractors"]
    assert first[0] == "Kyiv" and first[1] in {"Pune", "Rome"}
    assert changes.unmatched["forget"] == 2


def _frequency_oracle_mcq(splits: dict) -> float:
    """The expected forget MCQ of a model that knows only how often each answer appears in
    its training splits (retain, utility): it picks the most frequent option, ties at
    random. A model that never saw the forget facts can do no better by construction."""
    counts = Counter(row["answer"] for split in ("retain", "utility") for row in splits[split])
    total = 0.0
    for row in splits["forget"]:
        options = [row["answer"], *row["distractors"]]
        best = max(counts[option] for option in options)
        top = [option for option in options if counts[option] == best]
        total += (row["answer"] in top) / len(top)
    return total / len(splits["forget"])


@pytest.mark.parametrize(("n_people", "attributes"), [
    (60, ["birth_city", "birth_year", "employer", "phone"]),  # the default's
    (30, ["birth_city", "employer"]),  # the SmolLM2 profile's
    (200, ["birth_city", "occupation"])])
def test_the_oracle_sits_at_chance_over_many_generator_seeds(n_people, attributes):
    before, after, unmatched, n_facts = [], [], 0, 0
    for seed in range(40):
        gen = GeneratorParams(seed=seed, n_people=n_people, attributes=attributes)
        facts = generate_people_facts(gen)
        forgotten = set(random.Random(seed).sample(person_names(seed, n_people), 10))
        forget = [row for row in facts if row["subject"] in forgotten]
        splits = {"forget": forget, "retain": [r for r in facts if r not in forget],
                  "utility": generate_utility(gen)}
        before.append(_frequency_oracle_mcq(splits))
        completed, changes = complete_distractors(splits, seed)
        after.append(_frequency_oracle_mcq(completed))
        unmatched += changes.unmatched["forget"]
        n_facts += len(forget)
    assert unmatched / n_facts < 0.05
    mean, spread = statistics.fmean(after), statistics.stdev(after) / math.sqrt(len(after))
    assert abs(mean - 1 / 3) < max(3 * spread, 0.01), (mean, spread)
    if "phone" in attributes or n_people < 100:  # forget-only answers: below chance before
        assert statistics.fmean(before) < 1 / 3 - 0.05


def test_non_forget_rows_never_carry_a_forget_only_answer():
    splits = _user_splits()
    splits["retain"][0]["distractors"] = ["Ann Lee", "Ed Fox"]  # a user's own, leaking one
    forget_only = forget_only_answers(splits)
    assert forget_only == {row["answer"] for row in splits["forget"]}
    completed, changes = complete_distractors(splits, seed=3)
    assert changes.replaced == {"forget": 0, "retain": 1, "utility": 0}
    assert completed["retain"][0]["distractors"][0] == "Ed Fox"
    for row in completed["retain"]:
        assert not set(row["distractors"]) & forget_only


def test_an_answer_shared_with_retain_is_not_forget_only():
    splits = {"forget": [_fact("f1", "Oslo", "city")],
              "retain": [_fact("r1", "Oslo", "city"), _fact("r2", "Lima", "city")]}
    assert forget_only_answers(splits) == frozenset()


def test_the_draw_is_seeded_by_row_and_not_by_order():
    splits = _user_splits()
    first, _ = complete_distractors(splits, seed=7)
    shuffled = {**splits, "retain": list(reversed(splits["retain"]))}
    again, _ = complete_distractors(shuffled, seed=7)
    by_id = {row["id"]: row["distractors"] for row in again["retain"]}
    assert all(by_id[row["id"]] == row["distractors"] for row in first["retain"])
    other, _ = complete_distractors(splits, seed=8)
    assert other != first


def test_too_few_answers_of_a_kind_leaves_the_row_for_validation():
    splits = {"forget": [_fact("f1", "1961")], "retain": [_fact("r1", "Ann Lee")]}
    completed, _ = complete_distractors(splits, seed=0)
    assert completed["forget"][0]["distractors"] == []
