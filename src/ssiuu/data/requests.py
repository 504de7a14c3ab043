"""Deletion requests: JSON files under ``data/requests/`` naming the data subjects to forget.

A request file looks like::

    {"request_id": "req-0001", "received": "2026-11-20", "subjects": ["Name One", "Name Two"]}

A request id names files (its certificate, its status) and is matched in registry tags, so
it is held to :data:`ssiuu.config.layout.REQUEST_ID`: 1-64 letters, digits, ``.``, ``_`` or ``-``,
starting with a letter or a digit (no path separator, no ``..``, no quote or comma). The
``received`` date is a real date no later than tomorrow (UTC: a request sent from a time
zone ahead of UTC may carry tomorrow's date), and no subject is named twice.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from ssiuu.config.errors import DataError
from ssiuu.config.layout import check_request_id
from ssiuu.data.records import decode_utf8


@dataclass(frozen=True)
class DeletionRequest:
    """One request: its id, when it came in, the subjects it names and its file."""

    request_id: str
    received: str
    subjects: tuple[str, ...]
    path: str


def _require(raw: dict, key: str, kind: type, path: Path) -> object:
    if key not in raw:
        raise DataError(f"{path}: missing field '{key}'")
    value = raw[key]
    if not isinstance(value, kind):
        raise DataError(f"{path}: field '{key}' must be a {kind.__name__}")
    return value


def read_request(path: str | Path) -> DeletionRequest:
    """Parse one request file; raise :class:`DataError` naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    return parse_request(path.read_bytes(), path)


def parse_request(content: bytes, path: str | Path) -> DeletionRequest:
    """Parse the bytes of the request file ``path``; raise :class:`DataError` naming the
    file and the field."""
    path = Path(path)
    try:
        raw = json.loads(decode_utf8(content, path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise DataError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object")
    request_id = check_request_id(_require(raw, "request_id", str, path),
                                  f"{path}: field 'request_id'")
    received = _require(raw, "received", str, path)
    _check_received(received, path)
    subjects = _require(raw, "subjects", list, path)
    if not subjects:
        raise DataError(f"{path}: field 'subjects' is empty")
    first_at: dict[str, int] = {}
    for index, subject in enumerate(subjects):
        if not isinstance(subject, str) or not subject.strip():
            raise DataError(f"{path}: field 'subjects[{index}]' must be a non-empty string")
        if subject.strip() in first_at:
            raise DataError(f"{path}: field 'subjects[{index}]' repeats "
                            f"subjects[{first_at[subject.strip()]}]: name each person once")
        first_at[subject.strip()] = index
    return DeletionRequest(str(request_id), str(received), tuple(subjects), str(path))


def _check_received(received: str, path: Path) -> None:
    """A ``received`` date that parses and is no later than tomorrow (UTC)."""
    try:
        day = dt.date.fromisoformat(received)
    except ValueError:
        raise DataError(f"{path}: field 'received' must be a date (YYYY-MM-DD)") from None
    latest = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    if day > latest:
        raise DataError(f"{path}: field 'received' {received} is in the future "
                        f"(latest accepted: {latest.isoformat()})")


def read_requests(directory: str | Path, required: bool = True) -> list[DeletionRequest]:
    """Every ``*.json`` request in ``directory``, sorted by file name; ids must be unique.

    With ``required`` (the default), a missing folder or one without requests is an error.
    """
    directory = Path(directory)
    if not directory.is_dir():
        if not required:
            return []
        raise DataError(f"{directory}: deletion-request folder not found")
    requests = [read_request(path) for path in sorted(directory.glob("*.json"))]
    if not requests and required:
        raise DataError(f"{directory}: no deletion request (*.json) found")
    seen: dict[str, str] = {}
    for request in requests:
        if request.request_id in seen:
            raise DataError(
                f"{request.path}: field 'request_id' {request.request_id!r} "
                f"is already used by {seen[request.request_id]}"
            )
        seen[request.request_id] = request.path
    return requests
