"""The deletion-request inbox checks and the request status files."""

from __future__ import annotations

import json

import pytest

from ssiuu.errors import DataError
from ssiuu.inbox import (
    RequestStatus,
    accept,
    answered,
    in_progress,
    known_subjects,
    read_statuses,
    set_aside,
    validate_request,
    write_status,
)
from ssiuu.params import DataParams

SUBJECTS = {"Ada Known", "Bo Known"}


def _request(tmp_path, name="req-0002.json", **fields):
    raw = {"request_id": "req-0002", "received": "2026-11-25", "subjects": ["Ada Known"],
           "requested_by": "dpo@example.org", **fields}
    path = tmp_path / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))
    return path


def test_a_well_formed_request_about_known_people_passes(tmp_path):
    request = validate_request(_request(tmp_path), SUBJECTS, {"req-0001"})
    assert (request.request_id, request.subjects) == ("req-0002", ("Ada Known",))


@pytest.mark.parametrize(("fields", "taken", "message"), [
    ({"subjects": ["Bo Known", "Cy Unknown"]}, set(), "subjects[1]: not a data subject"),
    ({}, {"req-0002"}, "field 'request_id' 'req-0002' is already used"),
    ({"received": "yesterday"}, set(), "field 'received' must be a date"),
    ({"subjects": []}, set(), "field 'subjects' is empty"),
], ids=["unknown-subject", "reused-id", "bad-date", "no-subject"])
def test_a_bad_request_is_refused_naming_the_field_never_the_person(tmp_path, fields, taken,
                                                                     message):
    path = _request(tmp_path, **fields)
    with pytest.raises(DataError) as refused:
        validate_request(path, SUBJECTS, taken)
    assert message in str(refused.value) and str(path) in str(refused.value)
    assert "Cy Unknown" not in str(refused.value)


def test_statuses_are_kept_per_file_and_answered_ids_are_never_answered_again(tmp_path):
    first = RequestStatus("req-0002", "req-0002.json").enter("received").enter("validated")
    write_status(first, tmp_path)
    clash = RequestStatus("req-0001", "c-reused.json").enter("received").enter("rejected")
    write_status(clash, tmp_path)
    statuses = read_statuses(tmp_path)
    assert [s.file for s in statuses] == ["c-reused.json", "req-0002.json"]
    assert [h["state"] for h in statuses[1].history] == ["received", "validated"]
    assert answered(statuses) == {"req-0001"}  # req-0002 is still on its way
    assert [s.request_id for s in in_progress(statuses)] == ["req-0002"]
    write_status(statuses[1].enter("unlearned"), tmp_path)
    assert [s.state for s in in_progress(read_statuses(tmp_path))] == ["unlearned"]
    write_status(statuses[1].enter("registered"), tmp_path)
    assert answered(read_statuses(tmp_path)) == {"req-0001", "req-0002"}
    assert in_progress(read_statuses(tmp_path)) == []


def test_accepted_and_rejected_files_move_and_never_overwrite(tmp_path):
    accepted = accept(_request(tmp_path), tmp_path / "requests")
    assert accepted == tmp_path / "requests" / "req-0002.json"
    with pytest.raises(DataError, match="already there"):
        accept(_request(tmp_path), tmp_path / "requests")
    aside = set_aside(_request(tmp_path, name="bad.json"), tmp_path / "inbox")
    assert aside == tmp_path / "inbox" / "rejected" / "bad.json" and aside.is_file()


def test_the_known_subjects_are_the_people_of_the_data():
    subjects = known_subjects(DataParams())
    assert len(subjects) == DataParams().generator.n_people
