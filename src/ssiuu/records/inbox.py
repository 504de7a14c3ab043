"""The deletion-request inbox: check a dropped request before it enters the pipeline, and
keep each request's status.

Every file dropped into the inbox is handled on its own and ends either accepted or
rejected, never skipped and never an exception that stops the run. It must be a regular,
readable file of at most :data:`MAX_REQUEST_BYTES` (a directory, a FIFO, a device or a
symbolic link is rejected, and a link is never followed); well-formed
(:func:`ssiuu.data.requests.parse_request`: a safe id, a past ``received`` date, each subject
once); an id no other request holds (answered, rejected or on its way); a file name not
already in the request folder; and every subject a person the data holds. A request that
fails is *rejected* with the reason (which names fields and positions, never a subject's
name) and set aside under ``<inbox>/rejected/``; one that passes moves into
``data/requests/`` and the pipeline answers it.

Each request's status file records its states with their times: ``received → validated →
unlearned → registered``, or ``rejected``. It is named after the request id (an accepted
request, or a rejected one whose id was free), or ``rejected-<sha256 of the file>`` when the
id is unreadable or belongs to another request, so no status overwrites another's; it is
written atomically (a temporary file renamed over it). The ``validated`` status is written
before the file moves, so a run killed in between leaves a status whose file is still in
the inbox: the next run moves it and answers it. A request whose answer was interrupted
(the pipeline failed or the process died after it was validated) stays ``validated`` or
``unlearned``, with the reason, and is resumed by the next run. :func:`inbox_lock` keeps
two runs from answering the same inbox at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

from ssiuu.config.errors import DataError
from ssiuu.config.layout import REQUEST_ID, check_request_id
from ssiuu.config.params import DataParams
from ssiuu.data.loaders import load_data
from ssiuu.data.requests import DeletionRequest, parse_request

State = Literal["received", "validated", "unlearned", "registered", "rejected"]
IN_PROGRESS: tuple[State, ...] = ("validated", "unlearned")
MAX_REQUEST_BYTES = 64 * 1024  # a request names a few people: far below this
LOCK_FILE = ".ssiuu-inbox.lock"
MAX_KEPT_NAME = 150  # bytes of a dropped file's name kept in its set-aside name


@dataclass
class RequestStatus:
    """Where one request stands, with the time of each state it went through (UTC).

    ``key`` names its status file (:func:`status_key`); ``request_id`` is the id the file
    gave (``None`` when it had no readable one); ``sha256`` the request file's hash."""

    request_id: str | None
    file: str
    key: str = ""
    sha256: str | None = None
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


def status_file(status_dir: str | Path, key: str) -> Path:
    """The status file of the request with status key ``key`` (a request id, or
    ``rejected-<hash>``), checked to lie inside ``status_dir``."""
    check_request_id(key, f"{status_dir}: status key")
    return Path(status_dir) / f"{key}.json"


def status_key(request_id: str | None, content_hash: str, taken: Iterable[str]) -> str:
    """The key of a new status: ``request_id`` when it is free, else
    ``rejected-<first 16 hex of content_hash>`` (with ``-2``, ``-3``, ... when a file of the
    same content was rejected before): never a key in ``taken``."""
    taken = set(taken)
    if request_id is not None and REQUEST_ID.fullmatch(request_id) and request_id not in taken:
        return request_id
    base = f"rejected-{content_hash[:16]}"
    key, count = base, 1
    while key in taken:
        count += 1
        key = f"{base}-{count}"
    return key


def write_status(status: RequestStatus, status_dir: str | Path) -> Path:
    """Write ``status`` to its file atomically (a temporary file in the same folder renamed
    over it: a crash leaves the previous state, never half a file)."""
    path = status_file(status_dir, status.key or status.request_id or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _written(path, (json.dumps(asdict(status), indent=2) + "\n").encode()) as temporary:
        os.replace(temporary, path)
    return path


@contextmanager
def _written(target: Path, content: bytes) -> Iterator[str]:
    """A temporary file beside ``target`` holding ``content``, flushed to disk, for the
    caller to put in place (``os.replace``, or ``os.link`` to never overwrite); removed
    afterwards if it is still there."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        yield temporary
    finally:
        Path(temporary).unlink(missing_ok=True)


def read_statuses(status_dir: str | Path) -> list[RequestStatus]:
    """Every request status in ``status_dir``; a status file that is not one is a
    :class:`DataError` naming it (statuses are written atomically: it was edited by hand)."""
    folder = Path(status_dir)
    if not folder.is_dir():
        return []
    statuses = []
    for path in sorted(folder.glob("*.json")):
        try:
            status = RequestStatus(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: not a request status ({type(exc).__name__}); move it "
                            "out of the status folder") from None
        status.key = status.key or path.stem
        statuses.append(status)
    return statuses


def used_ids(statuses: Iterable[RequestStatus]) -> set[str]:
    """Every id a status holds, whatever its state: an id is never used twice (a rejected
    id is not reused; a corrected request comes with a new id)."""
    return {status.request_id for status in statuses if status.request_id is not None}


def in_progress(statuses: Iterable[RequestStatus]) -> list[RequestStatus]:
    """The requests validated but not yet registered: an answer that was interrupted, to be
    resumed."""
    return [status for status in statuses if status.state in IN_PROGRESS]


def known_subjects(params: DataParams) -> set[str]:
    """Every data subject a request may name: the people of the facts (or of the given
    forget split, when the data brings its own)."""
    loaded = load_data(params)
    rows = loaded.facts if loaded.given_splits is None else loaded.given_splits["forget"]
    return {row["subject"] for row in rows if row.get("subject")}


def inbox_entries(inbox: str | Path) -> list[Path]:
    """Every ``*.json`` entry of ``inbox`` whatever its kind (files, folders, links,
    FIFOs), sorted by name."""
    folder = Path(inbox)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def read_inbox_file(path: str | Path) -> bytes:
    """The bytes of a dropped request file, or a :class:`DataError` saying why it is none:
    not a regular file (a link is not followed: it may point anywhere), unreadable, or
    larger than :data:`MAX_REQUEST_BYTES` (never read past it)."""
    path = Path(path)
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            raise DataError(f"{path}: a symbolic link, not a request file (links are not "
                            "followed)")
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{path}: not a regular file ({_kind(info.st_mode)})")
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(handle, "rb") as source:
            if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                raise DataError(f"{path}: not a regular file")
            content = source.read(MAX_REQUEST_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") \
            from None
    if len(content) > MAX_REQUEST_BYTES:
        raise DataError(f"{path}: larger than {MAX_REQUEST_BYTES} bytes; a request names a "
                        "few people")
    return content


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def readable_id(content: bytes) -> str | None:
    """The request id ``content`` gives, if it parses as a JSON object with a valid one."""
    try:
        raw = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    value = raw.get("request_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and REQUEST_ID.fullmatch(value) else None


def validate_request(path: str | Path, subjects: set[str], taken_ids: Iterable[str],
                     content: bytes | None = None) -> DeletionRequest:
    """The request in ``path`` (its bytes ``content`` when already read), or a
    :class:`DataError` saying why it is rejected."""
    request = parse_request(read_inbox_file(path) if content is None else content, path)
    if request.request_id in set(taken_ids):
        raise DataError(f"{path}: field 'request_id' {request.request_id!r} is already used "
                        "by another request")
    unknown = [index for index, name in enumerate(request.subjects) if name not in subjects]
    if unknown:
        fields = ", ".join(f"subjects[{index}]" for index in unknown)
        raise DataError(f"{path}: {fields}: not a data subject of this data set")
    return request


def check_free_name(path: str | Path, requests_dir: str | Path) -> None:
    """A :class:`DataError` when the request folder already holds a file of ``path``'s name
    (another request's: a request never replaces one)."""
    target = Path(requests_dir) / Path(path).name
    if os.path.lexists(target):
        raise DataError(f"{path}: file name already taken in {requests_dir} by another "
                        "request; drop it under another name")


def accept(path: str | Path, requests_dir: str | Path, content: bytes) -> Path:
    """Write ``content``, the validated bytes of the request file ``path``, into the
    pipeline's request folder under its name (never over a file there; another filesystem
    is fine), then remove ``path``: what the pipeline answers is what was validated, even
    if the dropped file changed meanwhile."""
    check_free_name(path, requests_dir)
    target = Path(requests_dir) / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _written(target, content) as temporary:
            os.link(temporary, target)  # fails when the name was taken meanwhile
    except FileExistsError:
        check_free_name(path, requests_dir)  # raises, naming the taken file
        raise
    Path(path).unlink()
    return target


def set_aside(path: str | Path, inbox: str | Path, key: str) -> Path:
    """Move a rejected inbox entry, as it is (a link as a link), to
    ``<inbox>/rejected/<key>--<name>`` (a name over :data:`MAX_KEPT_NAME` bytes becomes its
    hash): it is not retried, and no rejected file replaces another."""
    folder = Path(inbox) / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(path).name
    if len(os.fsencode(name)) > MAX_KEPT_NAME:  # the file system's limit is 255 bytes
        name = f"{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}.json"
    target, count = folder / f"{key}--{name}", 1
    while os.path.lexists(target):
        count += 1
        target = folder / f"{key}--{count}--{name}"
    os.rename(path, target)
    return target


def content_hash(path: Path, content: bytes | None) -> str:
    """The sha256 of ``content``, or of the entry's kind and name when it could not be read."""
    return hashlib.sha256(content if content is not None
                          else b"unreadable:" + os.fsencode(path.name)).hexdigest()


def inbox_lock(root: str | Path, timeout: float = -1) -> FileLock:
    """The project's inbox lock (``<root>/.ssiuu-inbox.lock``): held by a run from reading
    the statuses to its last status write, so a nightly and a manual run never answer the
    same request; ``timeout`` seconds to wait for it (-1: until it is free)."""
    return FileLock(str(Path(root) / LOCK_FILE), timeout=timeout)


def triage(path: Path, status_dir: Path, inbox: Path, requests_dir: Path,
           subjects: set[str]) -> RequestStatus:
    """Handle one inbox entry: reject it (status ``rejected`` with the reason, the entry set
    aside), or accept it (status ``validated``, the file moved into ``requests_dir``) for
    the pipeline to answer. Never raises for anything the entry holds or is."""
    statuses = read_statuses(status_dir)
    keys = {status.key for status in statuses}
    taken = used_ids(statuses) | _request_folder_ids(requests_dir)
    content, request_id, reason = None, None, None
    try:
        content = read_inbox_file(path)
        request_id = readable_id(content)
        validate_request(path, subjects, taken, content)
        check_free_name(path, requests_dir)
    except DataError as exc:
        reason = printable(str(exc))
    except Exception as exc:  # anything else a hostile file triggers: still a rejection
        reason = printable(f"{path}: cannot be read as a request ({type(exc).__name__})")
    digest = content_hash(path, content)
    unfinished = next((s for s in statuses if s.state == "rejected" and s.sha256 == digest
                       and s.file == path.name), None)
    if unfinished is not None:  # rejected by a run that died before setting it aside
        set_aside(path, inbox, unfinished.key)
        return unfinished
    key = status_key(None if request_id in taken else request_id, digest, keys)
    status = RequestStatus(request_id, path.name, key, digest).enter("received")
    if reason is not None:
        status.reason = reason
        write_status(status.enter("rejected"), status_dir)
        set_aside(path, inbox, key)
        return status
    write_status(status.enter("validated"), status_dir)
    accept(path, requests_dir, content)
    return status


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (``os.fsdecode``'s surrogates)
    written as ``\\xNN``, so it prints and logs."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def finish_accept(status: RequestStatus, inbox: Path, requests_dir: Path) -> None:
    """Move the file of a ``validated`` request that is still in the inbox (a run died
    between writing its status and moving it) into ``requests_dir``; a
    :class:`DataError` when the file is in neither place."""
    if os.path.lexists(requests_dir / status.file):
        return
    dropped = inbox / status.file
    content = read_inbox_file(dropped) if os.path.lexists(dropped) else None
    if content is None or content_hash(dropped, content) != status.sha256:
        raise DataError(f"request {status.request_id} is {status.state} but its validated "
                        f"file {printable(status.file)} is in neither {requests_dir} nor "
                        f"{inbox}")
    accept(dropped, requests_dir, content)


def _request_folder_ids(requests_dir: Path) -> set[str]:
    """The ids of the requests already in the request folder, read file by file."""
    ids = set()
    for path in inbox_entries(requests_dir):
        try:
            found = readable_id(read_inbox_file(path))
        except DataError:
            found = None
        if found is not None:
            ids.add(found)
    return ids
