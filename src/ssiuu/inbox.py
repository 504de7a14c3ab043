"""The deletion-request inbox: check a dropped request before it enters the pipeline, and
keep each request's status.

A request file dropped into the inbox is checked against the data before anything else is
touched: well-formed (:func:`ssiuu.data.requests.read_request`), an id no other request
uses, a ``received`` date, and every subject a person the data holds. A request that fails
is *rejected* with the reason (which names fields and positions, never a subject's name);
one that passes moves into ``data/requests/`` and the pipeline answers it. Each request's
status file records its states with their times: ``received → validated → unlearned →
registered``, or ``rejected``. A request whose answer was interrupted (the pipeline failed
or the process died after it was validated) stays ``validated`` or ``unlearned``, with the
reason, and is resumed by the next run.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ssiuu.data.loaders import load_data
from ssiuu.data.requests import DeletionRequest, read_request
from ssiuu.errors import DataError
from ssiuu.params import DataParams

State = Literal["received", "validated", "unlearned", "registered", "rejected"]
ANSWERED: tuple[State, ...] = ("registered", "rejected")
IN_PROGRESS: tuple[State, ...] = ("validated", "unlearned")


@dataclass
class RequestStatus:
    """Where one request stands, with the time of each state it went through (UTC)."""

    request_id: str
    file: str
    history: list[dict[str, str]] = field(default_factory=list)
    reason: str | None = None
    versions: list[dict[str, Any]] = field(default_factory=list)
    gate: dict[str, int] | None = None
    certificate: str | None = None

    @property
    def state(self) -> str | None:
        """The latest state, ``None`` before the first."""
        return self.history[-1]["state"] if self.history else None

    def enter(self, state: State) -> RequestStatus:
        """Record that the request reached ``state`` now."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.history.append({"state": state, "at": now})
        return self


def status_file(status_dir: str | Path, request_file: str) -> Path:
    """Where the status of the request dropped as ``request_file`` is kept (named after the
    file, so a rejected file reusing another request's id cannot overwrite that one's)."""
    return Path(status_dir) / f"{Path(request_file).stem}.json"


def write_status(status: RequestStatus, status_dir: str | Path) -> Path:
    """Write ``status`` to its file (replacing the previous state of the same request)."""
    path = status_file(status_dir, status.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(status), indent=2) + "\n")
    return path


def read_statuses(status_dir: str | Path) -> list[RequestStatus]:
    """Every request status in ``status_dir``."""
    folder = Path(status_dir)
    return [RequestStatus(**json.loads(path.read_text()))
            for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def answered(statuses: Iterable[RequestStatus]) -> set[str]:
    """The ids of requests already registered or rejected: never answered twice (a
    rejected id is not reused; a corrected request comes with a new id)."""
    return {status.request_id for status in statuses if status.state in ANSWERED}


def in_progress(statuses: Iterable[RequestStatus]) -> list[RequestStatus]:
    """The requests validated (their file already in the request folder) but not yet
    registered: an answer that was interrupted, to be resumed."""
    return [status for status in statuses if status.state in IN_PROGRESS]


def known_subjects(params: DataParams) -> set[str]:
    """Every data subject a request may name: the people of the facts (or of the given
    forget split, when the data brings its own)."""
    loaded = load_data(params)
    rows = loaded.facts if loaded.given_splits is None else loaded.given_splits["forget"]
    return {row["subject"] for row in rows if row.get("subject")}


def validate_request(path: str | Path, subjects: set[str],
                     taken_ids: Iterable[str]) -> DeletionRequest:
    """The request in ``path``, or a :class:`DataError` saying why it is rejected."""
    request = read_request(path)
    if request.request_id in set(taken_ids):
        raise DataError(f"{path}: field 'request_id' {request.request_id!r} is already used "
                        "by another request")
    try:
        dt.date.fromisoformat(request.received)
    except ValueError:
        raise DataError(f"{path}: field 'received' must be a date (YYYY-MM-DD)") from None
    unknown = [index for index, name in enumerate(request.subjects) if name not in subjects]
    if unknown:
        fields = ", ".join(f"subjects[{index}]" for index in unknown)
        raise DataError(f"{path}: {fields}: not a data subject of this data set")
    return request


def accept(path: str | Path, requests_dir: str | Path) -> Path:
    """Move a validated request file into the pipeline's request folder."""
    target = Path(requests_dir) / Path(path).name
    if target.exists():
        raise DataError(f"{target}: a request file of that name is already there")
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.move(str(path), target))


def set_aside(path: str | Path, inbox: str | Path) -> Path:
    """Move a rejected request file into ``<inbox>/rejected/`` (it is not retried)."""
    target = Path(inbox) / "rejected" / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.move(str(path), target))
