"""Each validation rule, alone, rejects a split crafted to break it, and names the rows."""

import copy

import pytest

from ssiuu.data.requests import DeletionRequest
from ssiuu.data.validation import FITS_RULE, validate_splits


def _fact(fid, subject, question, answer):
    return {"id": fid, "subject": subject, "attribute": "a", "question": question,
            "answer": answer, "distractors": ["w1", "w2"]}


VALID = {
    "forget": [_fact("f1", "Ann Lee", "Where was Ann Lee born?", "Oslo"),
               _fact("f2", "Ann Lee", "Who employs Ann Lee?", "Acme")],
    "retain": [_fact("r1", "Bo Chan", "Where was Bo Chan born?", "Lima"),
               _fact("r2", "Bo Chan", "Who employs Bo Chan?", "Initech")],
    "utility": [_fact("u1", "", "What is 1 plus 1?", "2")],
    "benign": [{"id": "b1", "subject": "", "attribute": "instruction",
                "question": "Repeat the words: apple", "answer": "apple", "distractors": []}],
    "holdout": [_fact("h1", "Cy Diaz", "Where was Cy Diaz born?", "Oslo")],
}
SOURCES = dict.fromkeys(VALID, "crafted.jsonl")
REQUEST = DeletionRequest("req-1", "2026-11-01", ("Ann Lee",), "data/requests/req-1.json")
MAX_LENGTH = 12  # room for 10 words of question + answer


def _validate(splits, requests=(REQUEST,), sources=SOURCES):
    return validate_splits(splits, sources, list(requests), max_length=MAX_LENGTH)


def _drop(split, key):
    return lambda s: [row.pop(key) for row in s[split]]


def _set(split, index, key, value):
    return lambda s: s[split][index].__setitem__(key, value)


def _add(split, row):
    return lambda s: s[split].append(row)


CASES = {
    "schema: column 'answer' present": (_drop("forget", "answer"), ["forget"]),
    "non-empty split": (lambda s: s["utility"].clear(), []),
    "every row has an id": (_set("retain", 1, "id", None), []),
    "unique ids": (_set("retain", 1, "id", "r1"), ["r1", "r1"]),
    "every row has a question": (_set("retain", 1, "question", None), ["r2"]),
    "every row has an answer": (_set("retain", 1, "answer", None), ["r2"]),
    "no empty questions": (_set("utility", 0, "question", "  "), ["u1"]),
    "no empty answers": (_set("retain", 0, "answer", ""), ["r1"]),
    "no duplicate questions": (_set("retain", 1, "question", "Where was Bo Chan born?"),
                               ["r1", "r2"]),
    "every fact names its subject": (_set("retain", 0, "subject", None), ["r1"]),
    "two distinct distractors per fact": (_set("utility", 0, "distractors", ["3"]), ["u1"]),
    "no empty subjects": (_set("retain", 1, "subject", " "), ["r2"]),
    "distractors differ from the answer": (_set("retain", 0, "distractors", ["Lima", "x"]),
                                           ["r1"]),
    "forget and retain share no question": (
        _add("retain", _fact("r3", "Bo Chan", "Who employs Ann Lee?", "Hooli")), ["f2"]),
    "forget and retain share no id": (
        _add("retain", _fact("f1", "Bo Chan", "Is Bo Chan tall?", "yes")), ["f1"]),
    "no requested subject in retain": (_set("retain", 0, "subject", "Ann Lee"), ["r1"]),
    "no forget subject in benign": (_set("benign", 0, "question", "Repeat: Ann Lee"), ["b1"]),
    FITS_RULE: (_set("utility", 0, "answer", "2 " * 7), ["u1"]),
    "no forget-only answer among the distractors": (
        _set("retain", 1, "distractors", ["Oslo", "x"]), ["r2"]),
    "holdout shares no subject with any other split": (
        _add("holdout", _fact("h2", "Bo Chan", "Is Bo Chan tall?", "yes")), ["h2"]),
    "holdout shares no question with any other split": (
        _add("holdout", _fact("h2", "Di Eng", "What is 1 plus 1?", "2")), ["h2"]),
    "holdout shares no id with any other split": (
        _add("holdout", _fact("u1", "Di Eng", "Where was Di Eng born?", "Rome")), ["u1"]),
}


def test_valid_splits_pass_every_rule():
    report = _validate(copy.deepcopy(VALID))
    assert report.success, report.message()
    assert {r.rule for r in report.results} >= set(CASES)


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_rejects_its_crafted_split(rule):
    mutate, ids = CASES[rule]
    splits = copy.deepcopy(VALID)
    mutate(splits)
    report = _validate(splits)
    failed = {r.rule: r for r in report.failures()}
    assert set(failed) == {rule}, report.message()
    if ids and rule != "schema: column 'answer' present":
        assert sorted(failed[rule].unexpected_ids) == sorted(ids)
    assert f"rule '{rule}'" in report.message() and "crafted.jsonl" in report.message()


def test_repeated_distractor_counts_as_one():
    splits = copy.deepcopy(VALID)
    splits["retain"][0]["distractors"] = ["Quito", "Quito"]
    [failure] = _validate(splits).failures()
    assert failure.rule == "two distinct distractors per fact" and failure.unexpected_ids == ["r1"]


def test_unknown_requested_subject_is_reported_by_position():
    request = DeletionRequest("req-2", "2026-11-02", ("Ann Lee", "Cy Diaz"), "req-2.json")
    report = _validate(copy.deepcopy(VALID), [REQUEST, request])
    [failure] = report.failures()
    assert failure.rule == "every requested subject present"
    assert failure.note == "unknown subject(s) at req-2.json subjects[1]"


def test_forget_question_in_benign_is_reported():
    splits = copy.deepcopy(VALID)
    splits["benign"].append({**VALID["benign"][0], "id": "b2",
                             "question": "Where was Ann Lee born?"})
    failed = {r.rule: r.unexpected_ids for r in _validate(splits).failures()}
    assert failed == {"no forget question in benign": ["b2"],
                      "no forget subject in benign": ["b2"]}


@pytest.mark.parametrize("split", ["forget", "retain", "utility", "benign", "holdout"])
def test_row_too_long_for_max_length_is_rejected_in_every_split(split):
    splits = copy.deepcopy(VALID)
    row = splits[split][0]
    room = MAX_LENGTH - 2 - len(row["question"].split())
    row["answer"] = " ".join(["word"] * room)
    assert _validate(splits).success, "exactly max_length - 2 words must pass"
    row["answer"] += "  word"
    [failure] = _validate(splits).failures()
    assert (failure.rule, failure.split, failure.unexpected_ids) == (FITS_RULE, split,
                                                                     [row["id"]])
    assert failure.note.startswith("question + answer have more than 10 words")
