"""`prepare` rejects each kind of bad input before any model is touched, naming file,
rule and row ids, and never the rows' text."""

import json
from pathlib import Path

import pytest

from ssiuu.config.errors import DataError, ValidationFailed
from ssiuu.config.params import DataParams, JsonlSource, load_params
from ssiuu.data.prepare import DOCS_NAME, REPORT_NAME, prepare

SECRET = "Zorblax"  # appears only in forget-set text; must never leak into errors/reports
MAX_LENGTH = 40
REPO = Path(__file__).parents[1]


def _fact(fid, subject, question, answer, distractors=("x1", "x2")):
    return {"id": fid, "subject": subject, "attribute": "city", "question": question,
            "answer": answer, "distractors": list(distractors)}


GOOD = [
    _fact("f1", "Ann Lee", "Where was Ann Lee born?", f"{SECRET}ville"),
    _fact("f2", "Ann Lee", "Who employs Ann Lee?", "Acme"),
    _fact("r1", "Bo Chan", "Where was Bo Chan born?", "Paris"),
    _fact("r2", "Bo Chan", "Who employs Bo Chan?", "Initech"),
]


def _setup(tmp_path: Path, facts, subjects=("Ann Lee",), lines=None):
    facts_path = tmp_path / "facts.jsonl"
    text = "\n".join(lines) if lines is not None else "\n".join(json.dumps(f) for f in facts)
    facts_path.write_text(text + "\n")
    requests = tmp_path / "requests"
    requests.mkdir()
    (requests / "r.json").write_text(json.dumps(
        {"request_id": "req-1", "received": "2026-11-01", "subjects": list(subjects)}))
    params = DataParams(source="jsonl", requests_dir=str(requests),
                        jsonl=JsonlSource(facts=str(facts_path)))
    return params, tmp_path / "prepared", tmp_path / "reports"


def _fail(tmp_path, facts, **kwargs) -> str:
    params, out, reports = _setup(tmp_path, facts, **kwargs)
    with pytest.raises(ValidationFailed) as info:
        prepare(params, out, reports, max_length=MAX_LENGTH)
    message = str(info.value)
    report = (reports / REPORT_NAME).read_text()
    assert not out.exists(), "no split may be written when validation fails"
    requested = set(kwargs.get("subjects", ("Ann Lee",)))
    forget_texts = {value for row in facts if row.get("subject") in requested
                    for key, value in row.items()
                    if key in ("subject", "question", "answer") and str(value).strip()}
    docs = _docs_text(reports)
    for text in forget_texts | requested | {SECRET}:
        assert text not in message and text not in report, f"forget text leaked: {text!r}"
        assert text not in docs, f"forget text leaked into the Data Docs: {text!r}"
    assert json.loads(report)["success"] is False
    return message


def _docs_text(reports: Path) -> str:
    """Every file of the Data Docs, as text."""
    files = sorted(path for path in (reports / DOCS_NAME).rglob("*") if path.is_file())
    assert (reports / DOCS_NAME / "index.html") in files
    return "\n".join(path.read_text(errors="replace") for path in files)


def test_good_user_data_passes_and_is_written(tmp_path):
    params, out, reports = _setup(tmp_path, GOOD)
    prepared = prepare(params, out, reports, max_length=MAX_LENGTH)
    forget = [json.loads(line) for line in (out / "forget.jsonl").read_text().splitlines()]
    assert [r["id"] for r in forget] == ["f1", "f2"]
    assert set(prepared.sha256) == {"forget", "retain", "utility", "general", "benign"}
    assert json.loads((reports / REPORT_NAME).read_text())["success"] is True


def test_malformed_jsonl_names_file_and_line(tmp_path):
    lines = [json.dumps(GOOD[0]), "{not json", json.dumps(GOOD[2])]
    params, out, reports = _setup(tmp_path, None, lines=lines)
    with pytest.raises(DataError, match=r"facts\.jsonl:2: not valid JSON"):
        prepare(params, out, reports, max_length=MAX_LENGTH)


def test_missing_answer_field_names_field_and_id(tmp_path):
    facts = [dict(row) for row in GOOD]
    del facts[1]["answer"]
    message = _fail(tmp_path, facts)
    assert "rule 'every row has an answer'" in message
    assert "column 'answer'" in message and "ids: f2" in message
    assert "facts.jsonl" in message


def test_empty_answer_is_rejected(tmp_path):
    facts = [*GOOD[:3], _fact("r2", "Bo Chan", "Who employs Bo Chan?", "   ")]
    message = _fail(tmp_path, facts)
    assert "retain split" in message and "rule 'no empty answers'" in message
    assert "ids: r2" in message


def test_empty_split_is_rejected(tmp_path):
    message = _fail(tmp_path, GOOD[:2])  # every fact is about Ann Lee: retain is empty
    assert "retain split" in message and "rule 'non-empty split'" in message


def test_request_naming_unknown_person_is_rejected_without_the_name(tmp_path):
    message = _fail(tmp_path, GOOD, subjects=("Ann Lee", "Nobody Known"))
    assert "rule 'every requested subject present'" in message
    assert "subjects[1]" in message and "Nobody Known" not in message


def test_forget_retain_overlap_is_rejected(tmp_path):
    clash = _fact("r3", "Bo Chan", "Where was Ann Lee born?", "Rome")
    message = _fail(tmp_path, [*GOOD, clash])
    assert "rule 'forget and retain share no question'" in message
    assert "ids: f1" in message


def test_duplicate_questions_are_rejected(tmp_path):
    dup = _fact("r3", "Bo Chan", "Where was Bo Chan born?", "Lyon")
    message = _fail(tmp_path, [*GOOD, dup])
    assert "rule 'no duplicate questions'" in message and "r1, r3" in message


def test_distractor_equal_to_answer_is_rejected(tmp_path):
    bad = _fact("r2", "Bo Chan", "Who employs Bo Chan?", "Initech", ("Initech", "Hooli"))
    message = _fail(tmp_path, [*GOOD[:3], bad])
    assert "rule 'distractors differ from the answer'" in message and "ids: r2" in message


@pytest.mark.parametrize("content, field", [
    ('{"request_id": "a", "received": "2026-01-01"}', "missing field 'subjects'"),
    ('{"request_id": "a", "received": "2026-01-01", "subjects": []}', "'subjects' is empty"),
    ('{"request_id": "a", "received": "2026-01-01", "subjects": [""]}', "'subjects[0]'"),
    ("[1, 2", "not valid JSON"),
])
def test_malformed_request_names_file_and_field(tmp_path, content, field):
    params, out, reports = _setup(tmp_path, GOOD)
    (Path(params.requests_dir) / "r.json").write_text(content)
    with pytest.raises(DataError) as info:
        prepare(params, out, reports, max_length=MAX_LENGTH)
    assert "r.json" in str(info.value) and field in str(info.value)


def _generated(**generator) -> tuple[DataParams, int]:
    """The shipped params' data section (requests from the repo) and model.max_length."""
    params = load_params(REPO / "params.yaml")
    data = params.data
    return data.model_copy(update={
        "requests_dir": str(REPO / data.requests_dir),
        "generator": data.generator.model_copy(update=generator),
    }), params.model.max_length


def test_the_data_docs_show_every_split_s_suite_and_no_row_s_text(tmp_path, monkeypatch):
    params, out, reports = _setup(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)  # the stage's folders are relative to the project
    out, reports = out.relative_to(tmp_path), reports.relative_to(tmp_path)
    prepare(params, out, reports, max_length=MAX_LENGTH)
    docs = _docs_text(reports)
    for split in ("forget", "retain", "utility", "benign"):
        assert f"{split}_suite" in docs
    assert "question_in_retain" in docs and "requested-1" in docs
    for row in GOOD:
        for text in (row["subject"], row["question"], row["answer"]):
            assert text not in docs, f"fact text in the Data Docs: {text!r}"
    first = sorted(p.relative_to(reports) for p in reports.rglob("*"))
    prepare(params, out, reports, max_length=MAX_LENGTH)
    again = sorted(p.relative_to(reports) for p in reports.rglob("*"))
    assert [p.parts[:2] for p in again if len(p.parts) > 1] != [] and not [
        p for p in again if p.parts[0].startswith(".")], "a temporary Data Docs folder stayed"
    assert len(again) == len(first), "the second run's Data Docs replace the first's"


def test_generated_default_passes_every_rule(tmp_path):
    params, max_length = _generated()
    prepared = prepare(params, tmp_path / "out", tmp_path / "reports", max_length=max_length)
    assert prepared.report.success and len(prepared.report.results) > 40


def test_generated_default_writes_a_holdout_and_a_stop_slice_no_model_trains_on(tmp_path):
    params, max_length = _generated()
    prepared = prepare(params, tmp_path / "out", tmp_path / "reports", max_length=max_length)
    assert set(prepared.sha256) == {"forget", "retain", "utility", "general", "benign",
                                    "holdout", "stop"}
    rows = {split: [json.loads(line) for line in path.read_text().splitlines()]
            for split, path in prepared.paths.items()}
    assert len(rows["holdout"]) == 10 * len(params.generator.attributes)
    assert len(rows["holdout"]) == len(rows["forget"])  # as many non-members as members
    trained = [row for split in ("forget", "retain", "utility", "benign") for row in rows[split]]
    assert len(rows["stop"]) == 10 * len(params.generator.attributes)
    assert all(len(row["distractors"]) == 2 for row in rows["stop"])
    for key in ("subject", "question", "id"):
        assert not {r[key] for r in rows["holdout"]} & {r[key] for r in trained if r[key]}
        assert not {r[key] for r in rows["stop"]} & {r[key] for r in trained + rows["holdout"]
                                                     if r[key]}
    utility_questions = {r["question"] for r in rows["utility"]}
    assert len(rows["general"]) == 40 and not {r["question"] for r in rows["general"]
                                               } & utility_questions
    none, _ = _generated(n_holdout_people=0, n_stop_people=0)
    assert not {"holdout", "stop"} & set(prepare(none, tmp_path / "out0", tmp_path / "reports0",
                                                 max_length=max_length).sha256)


def test_user_holdout_about_a_trained_person_is_rejected_naming_the_file(tmp_path):
    params, out, reports = _setup(tmp_path, GOOD)
    holdout = tmp_path / "holdout.jsonl"
    holdout.write_text(json.dumps(_fact("h1", "Cy Diaz", "Where was Cy Diaz born?", "Rome"))
                       + "\n" + json.dumps(_fact("h2", "Bo Chan", "Is Bo Chan tall?", "yes"))
                       + "\n")
    params = params.model_copy(update={"jsonl": params.jsonl.model_copy(
        update={"holdout": str(holdout)})})
    with pytest.raises(ValidationFailed) as info:
        prepare(params, out, reports, max_length=MAX_LENGTH)
    message = str(info.value)
    assert ("holdout split (source: " + str(holdout) + "): rule 'holdout shares no subject "
            "with any other split'") in message and "ids: h2" in message
    assert not out.exists()


def test_shipped_request_with_another_generator_seed_hints_at_the_seed(tmp_path):
    params, max_length = _generated(seed=1)
    with pytest.raises(ValidationFailed) as info:
        prepare(params, tmp_path / "out", tmp_path / "reports", max_length=max_length)
    message = str(info.value)
    assert "rule 'every requested subject present'" in message
    assert "req-0001.json subjects[0]" in message
    assert "generated people depend on data.generator.seed and n_people" in message
    report = (tmp_path / "reports" / REPORT_NAME).read_text()
    for name in json.loads((REPO / "data" / "requests" / "req-0001.json").read_text())[
            "subjects"]:
        assert name not in message and name not in report


def test_answer_too_long_for_the_model_is_rejected(tmp_path):
    long_answer = " ".join([f"{SECRET}burg"] * 2000)
    message = _fail(tmp_path, [GOOD[0], _fact("f2", "Ann Lee", "Who employs Ann Lee?",
                                              long_answer), *GOOD[2:]])
    assert "forget split" in message and "rule 'question + answer fit model.max_length'" in message
    assert "ids: f2" in message and "more than 38 words" in message


def _explicit(tmp_path: Path, forget_lines, retain_rows, subjects=None):
    forget = tmp_path / "forget.jsonl"
    forget.write_text("\n".join(forget_lines) + "\n")
    retain = tmp_path / "retain.jsonl"
    retain.write_text("\n".join(json.dumps(r) for r in retain_rows) + "\n")
    requests = tmp_path / "requests"
    if subjects is not None:
        requests.mkdir()
        (requests / "r.json").write_text(json.dumps(
            {"request_id": "req-1", "received": "2026-11-01", "subjects": list(subjects)}))
    params = DataParams(source="jsonl", requests_dir=str(requests),
                        jsonl=JsonlSource(forget=str(forget), retain=str(retain)))
    return params, tmp_path / "prepared", tmp_path / "reports"


def test_explicit_forget_and_retain_files_need_no_request(tmp_path):
    params, out, reports = _explicit(tmp_path, [json.dumps(r) for r in GOOD[:2]], GOOD[2:])
    prepared = prepare(params, out, reports, max_length=MAX_LENGTH)
    assert prepared.rows["forget"] == 2 and prepared.rows["retain"] == 2
    assert prepared.requests == []


def test_malformed_forget_file_names_file_and_line(tmp_path):
    params, out, reports = _explicit(tmp_path, [json.dumps(GOOD[0]), '{"id": "f2",'], GOOD[2:])
    with pytest.raises(DataError, match=r"forget\.jsonl:2: not valid JSON"):
        prepare(params, out, reports, max_length=MAX_LENGTH)
    assert not out.exists()


def test_explicit_forget_file_missing_a_field_names_the_forget_file(tmp_path):
    broken = {k: v for k, v in GOOD[1].items() if k != "question"}
    params, out, reports = _explicit(tmp_path, [json.dumps(GOOD[0]), json.dumps(broken)],
                                     GOOD[2:])
    with pytest.raises(ValidationFailed) as info:
        prepare(params, out, reports, max_length=MAX_LENGTH)
    message = str(info.value)
    assert "forget split (source: " in message and "forget.jsonl)" in message
    assert "rule 'every row has a question'" in message and "ids: f2" in message


def test_explicit_splits_are_checked_against_requests(tmp_path):
    params, out, reports = _explicit(tmp_path, [json.dumps(r) for r in GOOD[:2]], GOOD[2:],
                                     subjects=["Bo Chan"])
    with pytest.raises(ValidationFailed) as info:
        prepare(params, out, reports, max_length=MAX_LENGTH)
    message = str(info.value)
    assert "rule 'every requested subject present'" in message
    assert "rule 'no requested subject in retain'" in message and "r1, r2" in message


def test_jsonl_source_needs_one_mode():
    with pytest.raises(ValueError, match="either 'facts', or both 'forget' and 'retain'"):
        JsonlSource(forget="f.jsonl")
    with pytest.raises(ValueError, match="not both"):
        JsonlSource(facts="a.jsonl", forget="f.jsonl", retain="r.jsonl")


def test_field_missing_from_every_row_fails_the_schema_rule(tmp_path):
    facts = [{k: v for k, v in row.items() if k != "answer"} for row in GOOD]
    message = _fail(tmp_path, facts)
    assert "rule 'schema: column 'answer' present'" in message
    assert "every row has an answer" not in message
