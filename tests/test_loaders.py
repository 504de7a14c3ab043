"""User data: JSONL and Hugging Face datasets with field mapping, distractors filled in."""

import json

import pytest

from ssiuu.config.errors import DataError
from ssiuu.config.params import DataParams, FieldMap, HFSource, JsonlSource
from ssiuu.data.distractors import answer_shape
from ssiuu.data.loaders import load_data
from ssiuu.data.prepare import prepare

PEOPLE = {"Ann Lee": ("Oslo", "Acme"), "Bo Chan": ("Lima", "Initech"),
          "Cy Diaz": ("Kyiv", "Hooli"), "Di Eng": ("Pune", "Globex")}


def _rows(question_key="q", answer_key="a", subject_key="person"):
    rows = []
    for name, (city, employer) in PEOPLE.items():
        rows.append({question_key: f"Where was {name} born?", answer_key: city,
                     subject_key: name, "kind": "city"})
        rows.append({question_key: f"Who employs {name}?", answer_key: employer,
                     subject_key: name, "kind": "employer"})
    return rows


MAX_LENGTH = 40
FIELDS = FieldMap(question="q", answer="a", subject="person", id=None, attribute="kind",
                  distractors=None)


def _requests(tmp_path):
    folder = tmp_path / "requests"
    folder.mkdir()
    (folder / "r.json").write_text(json.dumps(
        {"request_id": "r", "received": "2026-11-01", "subjects": ["Bo Chan"]}))
    return str(folder)


def test_jsonl_with_other_column_names(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _rows()) + "\n")
    params = DataParams(source="jsonl", requests_dir=_requests(tmp_path),
                        jsonl=JsonlSource(facts=str(path), fields=FIELDS))
    prepared = prepare(params, tmp_path / "out", tmp_path / "reports",
                       max_length=MAX_LENGTH)
    forget = [json.loads(x) for x in prepared.paths["forget"].read_text().splitlines()]
    assert [r["id"] for r in forget] == ["facts-3", "facts-4"]
    assert {r["answer"] for r in forget} == {"Lima", "Initech"}
    for row in forget:
        assert len(row["distractors"]) == 2 and row["answer"] not in row["distractors"]
    cities = {city for city, _ in PEOPLE.values()}
    assert set(forget[0]["distractors"]) <= cities - {"Lima"}


def test_hf_dataset_from_a_local_folder(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "\n".join(json.dumps(r) for r in _rows("prompt", "target", "who")) + "\n")
    fields = FIELDS.model_copy(update={"question": "prompt", "answer": "target",
                                       "subject": "who"})
    params = DataParams(source="hf", requests_dir=_requests(tmp_path),
                        hf=HFSource(name=str(folder), split="train", fields=fields))
    loaded = load_data(params)
    assert len(loaded.facts) == 8 and loaded.sources["forget"].startswith("hf:")
    prepared = prepare(params, tmp_path / "out", tmp_path / "reports",
                       max_length=MAX_LENGTH)
    assert len(prepared.paths["retain"].read_text().splitlines()) == 6


def test_hf_dataset_with_missing_mapped_column_is_named(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in _rows()) + "\n")
    params = DataParams(source="hf", requests_dir=_requests(tmp_path),
                        hf=HFSource(name=str(folder), fields=FieldMap(question="q")))
    with pytest.raises(DataError, match=r"missing column\(s\) \['answer', 'subject'\]"):
        load_data(params)


def test_unknown_hf_dataset_is_named(tmp_path):
    params = DataParams(source="hf", requests_dir=_requests(tmp_path),
                        hf=HFSource(name="no-such-user/no-such-dataset"))
    with pytest.raises(DataError, match="data.hf.name: cannot load dataset"):
        load_data(params)


def test_user_facts_without_attribute_get_distractors_of_their_shape_and_split(tmp_path):
    rows = []
    for number, (name, (city, _)) in enumerate(PEOPLE.items()):
        rows.append({"q": f"Where was {name} born?", "a": city, "person": name})
        rows.append({"q": f"What is the phone of {name}?", "a": f"555-01{number}{number}",
                     "person": name})
        rows.append({"q": f"Who is the partner of {name}?", "a": f"Partner {'ABCD'[number]}",
                     "person": name})
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "requests").mkdir()
    (tmp_path / "requests" / "r.json").write_text(json.dumps(
        {"request_id": "r", "received": "2026-11-01", "subjects": ["Bo Chan", "Cy Diaz",
                                                                   "Di Eng"]}))
    params = DataParams(source="jsonl", requests_dir=str(tmp_path / "requests"),
                        jsonl=JsonlSource(facts=str(path), fields=FIELDS.model_copy(
                            update={"attribute": None})))
    prepared = prepare(params, tmp_path / "out", tmp_path / "reports", max_length=MAX_LENGTH)
    splits = {name: [json.loads(x) for x in prepared.paths[name].read_text().splitlines()]
              for name in ("forget", "retain")}
    forget_answers = {row["answer"] for row in splits["forget"]}
    for row in splits["forget"]:  # three people: other forget answers of the same shape
        assert set(row["distractors"]) <= forget_answers - {row["answer"]}
        assert {answer_shape(d) for d in row["distractors"]} == {answer_shape(row["answer"])}
    for row in splits["retain"]:  # one person left: never a forget answer
        assert not set(row["distractors"]) & forget_answers
    assert prepared.distractors.drawn == {"forget": 9, "retain": 3, "utility": 0,
                                          "general": 0}


def test_non_scalar_field_is_named(tmp_path):
    rows = _rows()
    rows[2]["a"] = {"city": "Lima"}
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    params = DataParams(source="jsonl", requests_dir=_requests(tmp_path),
                        jsonl=JsonlSource(facts=str(path), fields=FIELDS))
    with pytest.raises(DataError, match="facts row 3: field 'a' must be text or a number"):
        load_data(params)


def test_a_jsonl_file_with_a_byte_order_mark_reads_as_without(tmp_path):
    from ssiuu.data.records import read_jsonl

    rows = [{"id": "a", "question": "Q?", "answer": "A"}, {"id": "b", "question": "R?",
                                                          "answer": "B"}]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    (tmp_path / "plain.jsonl").write_text(text)
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_jsonl(tmp_path / "bom.jsonl") == read_jsonl(tmp_path / "plain.jsonl") == rows
