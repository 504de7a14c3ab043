"""The deletion-request inbox: the checks of a dropped request, hostile entries (paths as ids,
folders, links, FIFOs, huge files, reused ids and names), the status files and the lock."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from ssiuu.config import layout
from ssiuu.config.errors import DataError
from ssiuu.config.params import DataParams
from ssiuu.data.requests import read_requests
from ssiuu.records.inbox import (
    MAX_REQUEST_BYTES,
    RequestStatus,
    accept,
    finish_accept,
    in_progress,
    inbox_entries,
    inbox_lock,
    known_subjects,
    read_statuses,
    set_aside,
    triage,
    validate_request,
    write_status,
)

SUBJECTS = {"Ada Known", "Bo Known"}


def _request(tmp_path, name="req-0002.json", **fields):
    raw = {"request_id": "req-0002", "received": "2026-11-25", "subjects": ["Ada Known"],
           "requested_by": "dpo@example.org", **fields}
    path = tmp_path / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))
    return path


def _folders(tmp_path) -> tuple[Path, Path, Path]:
    return tmp_path / "status", tmp_path / "inbox", tmp_path / "requests"


def _triage_all(tmp_path) -> list[RequestStatus]:
    status_dir, inbox, requests_dir = _folders(tmp_path)
    return [triage(path, status_dir, inbox, requests_dir, SUBJECTS)
            for path in inbox_entries(inbox)]


def test_a_well_formed_request_about_known_people_passes(tmp_path):
    request = validate_request(_request(tmp_path), SUBJECTS, {"req-0001"})
    assert (request.request_id, request.subjects) == ("req-0002", ("Ada Known",))


TOMORROW = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)


@pytest.mark.parametrize(("fields", "taken", "message"), [
    ({"subjects": ["Bo Known", "Cy Unknown"]}, set(), "subjects[1]: not a data subject"),
    ({}, {"req-0002"}, "field 'request_id' 'req-0002' is already used"),
    ({"received": "yesterday"}, set(), "field 'received' must be a date"),
    ({"received": "2031-01-01"}, set(), "field 'received' 2031-01-01 is in the future"),
    ({"subjects": []}, set(), "field 'subjects' is empty"),
    ({"subjects": ["Ada Known", "Bo Known", "Ada Known"]}, set(),
     "field 'subjects[2]' repeats subjects[0]"),
    ({"request_id": "../../README"}, set(), "field 'request_id': '../../README' is not a"),
    ({"request_id": "/tmp/elsewhere"}, set(), "is not a request id"),
    ({"request_id": "O'Neil,1"}, set(), "is not a request id"),
    ({"request_id": ""}, set(), "is not a request id"),
], ids=["unknown-subject", "reused-id", "bad-date", "future-date", "no-subject",
        "repeated-subject", "traversal-id", "absolute-id", "quote-and-comma", "empty-id"])
def test_a_bad_request_is_refused_naming_the_field_never_the_person(tmp_path, fields, taken,
                                                                     message):
    path = _request(tmp_path, **fields)
    with pytest.raises(DataError) as refused:
        validate_request(path, SUBJECTS, taken)
    assert message in str(refused.value) and str(path) in str(refused.value)
    assert "Cy Unknown" not in str(refused.value) and "Ada Known" not in str(refused.value)


def test_tomorrow_is_accepted_for_requests_sent_from_ahead_of_utc(tmp_path):
    path = _request(tmp_path, received=TOMORROW.isoformat())
    assert validate_request(path, SUBJECTS, set()).received == TOMORROW.isoformat()


def test_a_request_folder_with_a_path_as_id_fails_before_any_certificate(tmp_path):
    folder = tmp_path / "requests"
    folder.mkdir()
    (folder / "evil.json").write_text(json.dumps(
        {"request_id": "../../README", "received": "2026-11-25", "subjects": ["Ada Known"]}))
    with pytest.raises(DataError, match="evil.json: field 'request_id'"):
        read_requests(folder)
    with pytest.raises(DataError, match="not a request id"):
        layout.certificate("../../README")
    assert layout.certificate("req-0001") == layout.CERTIFICATES / "req-0001.md"


def test_a_request_file_with_a_byte_order_mark_reads(tmp_path):
    path = _request(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert validate_request(path, SUBJECTS, set()).request_id == "req-0002"


def test_hostile_entries_are_each_rejected_with_a_status_and_a_valid_one_behind_is_accepted(
        tmp_path):
    status_dir, inbox, requests_dir = _folders(tmp_path)
    (inbox / "a-folder.json").mkdir(parents=True)
    (inbox / "b-dangling.json").symlink_to(tmp_path / "nowhere.json")
    (inbox / "c-zero.json").symlink_to("/dev/zero")
    os.mkfifo(inbox / "d-fifo.json")
    (inbox / "e-huge.json").write_bytes(b" " * (MAX_REQUEST_BYTES + 1))
    requests_dir.mkdir()
    (requests_dir / "f-taken.json").write_text(json.dumps(
        {"request_id": "req-0001", "received": "2026-11-20", "subjects": ["Bo Known"]}))
    _request(tmp_path, "f-taken.json", request_id="req-0003")  # a new id, a taken name
    _request(tmp_path, "g-reused.json", request_id="req-0001")  # the id of a request there
    _request(tmp_path, "h-escape.json", request_id="../../../elsewhere/escape")
    _request(tmp_path, "z-valid.json")

    statuses = _triage_all(tmp_path)

    assert [s.state for s in statuses] == ["rejected"] * 8 + ["validated"]
    reasons = [s.reason for s in statuses[:8]]
    for expected, reason in zip(["not a regular file (a directory)", "a symbolic link",
                                 "a symbolic link", "not a regular file (a FIFO)",
                                 f"larger than {MAX_REQUEST_BYTES} bytes",
                                 "file name already taken", "'req-0001' is already used",
                                 "is not a request id"], reasons, strict=True):
        assert expected in reason
    assert inbox_entries(inbox) == []  # every entry handled: nothing left to jam a later run
    rejected = sorted(p.name for p in (inbox / "rejected").iterdir())
    assert len(rejected) == 8 and (inbox / "rejected").joinpath(
        f"{statuses[1].key}--b-dangling.json").is_symlink()  # moved as a link, not followed
    assert (requests_dir / "z-valid.json").is_file()
    assert json.loads((requests_dir / "f-taken.json").read_text())["request_id"] == "req-0001"
    written = {s.key: s for s in read_statuses(status_dir)}
    assert len(written) == 9 and written["req-0002"].state == "validated"
    assert written[statuses[6].key].request_id == "req-0001"  # the reused id, not its key
    assert statuses[6].key.startswith("rejected-") and "req-0001" not in written
    assert not (tmp_path.parent / "elsewhere").exists()


def test_entries_that_break_a_parser_or_a_file_name_are_rejected_and_the_run_goes_on(
        tmp_path):
    status_dir, inbox, requests_dir = _folders(tmp_path)
    inbox.mkdir(parents=True)
    (inbox / "deep.json").write_text("[" * 5000)  # RecursionError in json.loads
    (inbox / ("x" * 240 + ".json")).write_text("{not json")  # <key>--<name>: over 255 bytes
    os.mkdir(os.path.join(os.fsencode(inbox), b"\xff-not-utf8.json"))
    _request(tmp_path, "z-valid.json")
    statuses = _triage_all(tmp_path)
    assert sorted(s.state for s in statuses) == ["rejected"] * 3 + ["validated"]
    reasons = " | ".join(s.reason for s in statuses if s.reason)
    assert "not valid JSON (nested too deeply)" in reasons
    assert "\\xff-not-utf8.json: not a regular file (a directory)" in reasons
    assert inbox_entries(inbox) == [] and (requests_dir / "z-valid.json").is_file()
    assert len(read_statuses(status_dir)) == 4
    assert len(list((inbox / "rejected").iterdir())) == 3
    assert _triage_all(tmp_path) == []  # nothing left to jam the next run


def test_what_is_accepted_is_the_validated_content(tmp_path):
    path = _request(tmp_path)
    validated = path.read_bytes()
    path.write_text('{"request_id": "req-0002", "subjects": ["Someone Else"]}')  # changed since
    target = accept(path, tmp_path / "requests", validated)
    assert target.read_bytes() == validated and not path.exists()
    with pytest.raises(DataError, match="file name already taken"):
        accept(_request(tmp_path), tmp_path / "requests", validated)


def test_a_reused_id_is_rejected_whether_answered_rejected_or_pending(tmp_path):
    status_dir, inbox, _ = _folders(tmp_path)
    for request_id, state in (("req-0010", "registered"), ("req-0011", "rejected"),
                              ("req-0012", "unlearned")):
        write_status(RequestStatus(request_id, f"{request_id}.json", request_id)
                     .enter("received").enter(state), status_dir)
        _request(tmp_path, f"again-{request_id}.json", request_id=request_id)
    statuses = _triage_all(tmp_path)
    assert [s.state for s in statuses] == ["rejected"] * 3
    assert all("is already used by another request" in s.reason for s in statuses)
    kept = {s.key: s.state for s in read_statuses(status_dir)}
    assert {key: kept[key] for key in ("req-0010", "req-0011", "req-0012")} == {
        "req-0010": "registered", "req-0011": "rejected", "req-0012": "unlearned"}


def test_two_files_of_one_name_keep_two_statuses_and_two_rejected_files(tmp_path):
    status_dir, inbox, _ = _folders(tmp_path)
    _request(tmp_path, "alice.json", request_id="req-0020")
    first = _triage_all(tmp_path)[0]
    assert first.state == "validated"
    (inbox / "alice.json").write_text("{not json")
    second = _triage_all(tmp_path)[0]
    (inbox / "alice.json").write_text("{not json either")
    third = _triage_all(tmp_path)[0]
    assert (second.state, third.state) == ("rejected", "rejected")
    assert "not valid JSON" in second.reason and second.request_id is None
    statuses = {s.key: s for s in read_statuses(status_dir)}
    assert statuses["req-0020"].state == "validated"  # not replaced by the later alice.json
    assert len({first.key, second.key, third.key}) == 3 and len(statuses) == 3
    assert len(list((inbox / "rejected").iterdir())) == 2


def test_set_aside_never_replaces_a_rejected_file(tmp_path):
    inbox = tmp_path / "inbox"
    first = set_aside(_request(tmp_path, "bad.json"), inbox, "rejected-ab")
    second = set_aside(_request(tmp_path, "bad.json", received="x"), inbox, "rejected-ab")
    assert first != second and first.is_file() and second.is_file()
    assert json.loads(second.read_text())["received"] == "x"


def test_statuses_are_written_whole_and_a_hand_broken_one_is_named(tmp_path):
    status = RequestStatus("req-0002", "req-0002.json", "req-0002").enter("received")
    path = write_status(status.enter("validated"), tmp_path)
    assert path == tmp_path / "req-0002.json" and os.listdir(tmp_path) == ["req-0002.json"]
    assert [s.state for s in in_progress(read_statuses(tmp_path))] == ["validated"]
    (tmp_path / "broken.json").write_text('{"request_id": "req-00')
    with pytest.raises(DataError, match=r"broken\.json: not a request status"):
        read_statuses(tmp_path)
    with pytest.raises(DataError, match="not a request id"):
        write_status(RequestStatus("../up", "x.json", "../up"), tmp_path)


def test_a_request_validated_but_not_moved_is_moved_by_the_next_run(tmp_path):
    status_dir, inbox, requests_dir = _folders(tmp_path)
    path = _request(tmp_path)
    status = _triage_all(tmp_path)[0]
    os.rename(requests_dir / path.name, path)  # as if the run died before the move
    finish_accept(status, inbox, requests_dir)
    assert (requests_dir / path.name).is_file() and not path.exists()
    (requests_dir / path.name).unlink()
    with pytest.raises(DataError, match="in neither"):
        finish_accept(status, inbox, requests_dir)


def _drain(root: str) -> None:
    status_dir, inbox, requests_dir = _folders(Path(root))
    with inbox_lock(root):
        for path in inbox_entries(inbox):
            triage(path, status_dir, inbox, requests_dir, SUBJECTS)


def test_two_runs_at_once_handle_each_entry_once(tmp_path):
    for number in range(30):
        _request(tmp_path, f"r{number:02d}.json", request_id=f"req-{number:04d}",
                 subjects=["Ada Known" if number % 2 else "Nobody"])
    context = multiprocessing.get_context("spawn")
    runs = [context.Process(target=_drain, args=(str(tmp_path),)) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert [run.exitcode for run in runs] == [0, 0]
    statuses = read_statuses(tmp_path / "status")
    assert sorted(s.request_id for s in statuses) == [f"req-{n:04d}" for n in range(30)]
    assert sorted(s.state for s in statuses) == ["rejected"] * 15 + ["validated"] * 15
    assert len(list((tmp_path / "requests").iterdir())) == 15
    assert len(list((tmp_path / "inbox" / "rejected").iterdir())) == 15


def test_the_known_subjects_are_the_people_of_the_data():
    subjects = known_subjects(DataParams())
    assert len(subjects) == DataParams().generator.n_people
