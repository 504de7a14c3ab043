"""Prefect flow `deletion-requests`: answer every new request dropped into the inbox.

For each request file in the inbox (``flows.inbox``) not yet answered, one after the other:
validate it against the data (:func:`ssiuu.inbox.validate_request`: a malformed file, a
reused id or a subject the data does not hold ends ``rejected`` with the reason, the file
set aside and nothing else touched); move it into ``data.requests_dir``; run the pipeline
flow up to ``report`` (``unlearned``) and then ``register`` (``registered``), so DVC
reruns what the new forget set changes and the workspace's ``dvc.lock`` stays consistent;
and write the request's status file (``flows.status_dir``) with its times, the registered
versions, the gate's counts and its certificate. A request already answered is skipped; one
whose answer was interrupted (a failed stage, a dead process: its status still
``validated`` or ``unlearned``) is resumed first, DVC rerunning only what is stale.

Run it with ``python -m flows.deletion_requests`` or through the ``nightly-deletion-requests``
deployment (``prefect.yaml``).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.pipeline import pipeline
from ssiuu import layout
from ssiuu.data.requests import read_request, read_requests
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
from ssiuu.params import load_params


def _request_id(path: Path) -> str:
    """The request's id, or its file name's stem when the file cannot be read."""
    try:
        return read_request(path).request_id
    except DataError:
        return path.stem


def _registered(request_id: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    record = layout.read_json(layout.REGISTRY)
    if request_id not in record["requests"]:
        raise DataError(f"{layout.REGISTRY}: the registration does not cover {request_id}")
    versions = [{"model": record["model"], **version} for version in record["versions"]]
    gate = {verdict: sum(v["gate"] == verdict for v in versions)
            for verdict in ("passed", "failed")}
    return versions, gate


def _answer(path: Path, status_dir: Path, inbox: Path, requests_dir: Path,
            subjects: set[str], taken: set[str]) -> RequestStatus:
    """Validate the request file ``path``: reject it, or accept it and answer it."""
    logger = get_run_logger()
    status = RequestStatus(_request_id(path), path.name).enter("received")
    try:
        request = validate_request(path, subjects, taken)
    except DataError as exc:
        status.reason = str(exc)
        set_aside(path, inbox)
        write_status(status.enter("rejected"), status_dir)
        logger.warning("%s rejected: %s", status.request_id, exc)
        return status
    accept(path, requests_dir)
    write_status(status.enter("validated"), status_dir)
    logger.info("%s validated: %d subject(s); running the pipeline", request.request_id,
                len(request.subjects))
    return _unlearn_and_register(status, status_dir)


def _unlearn_and_register(status: RequestStatus, status_dir: Path) -> RequestStatus:
    """Run the pipeline up to ``report`` (``unlearned``), then ``register``
    (``registered``). If it fails, the status keeps its state with the reason, the failure
    propagates (the flow run fails) and the next run resumes the request: from ``unlearned``,
    straight to ``register`` (whose run still reruns whatever upstream stage DVC finds
    stale)."""
    try:
        if status.state != "unlearned":
            pipeline(target="report", root=".")
            write_status(status.enter("unlearned"), status_dir)
        pipeline(target="register", root=".")
        status.versions, status.gate = _registered(status.request_id)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        status.reason = (f"interrupted in state {status.state!r}: {type(exc).__name__}: "
                         f"{first_line} (resumed by the next run)")
        write_status(status, status_dir)
        raise
    status.reason = None
    status.certificate = layout.certificate(status.request_id).as_posix()
    write_status(status.enter("registered"), status_dir)
    get_run_logger().info("%s registered: %d version(s), %d passed the release gate",
                          status.request_id, len(status.versions), status.gate["passed"])
    return status


@flow(name="deletion-requests", log_prints=True)
def answer_requests(root: str = ".") -> list[dict[str, Any]]:
    """Answer every unanswered request in the inbox; return each one's final status."""
    with contextlib.chdir(root):
        return _answer_inbox()


def _answer_inbox() -> list[dict[str, Any]]:
    params = load_params("params.yaml")
    inbox, status_dir = Path(params.flows.inbox), Path(params.flows.status_dir)
    requests_dir = Path(params.data.requests_dir)
    statuses = read_statuses(status_dir)
    done = answered(statuses)
    interrupted = in_progress(statuses)
    pending = [path for path in sorted(inbox.glob("*.json")) if _request_id(path) not in done]
    for path in sorted(set(inbox.glob("*.json")) - set(pending)):
        get_run_logger().info("%s: already answered, skipped", path.name)
    results = []
    for status in interrupted:
        get_run_logger().info("%s: resuming an interrupted answer (state %s)",
                              status.request_id, status.state)
        results.append(_result(_unlearn_and_register(status, status_dir)))
        done.add(status.request_id)
    if not pending:
        return results
    subjects = known_subjects(params.data)
    for path in pending:
        taken = {r.request_id for r in read_requests(requests_dir, required=False)} | done
        status = _answer(path, status_dir, inbox, requests_dir, subjects, taken)
        done.add(status.request_id)
        results.append(_result(status))
    return results


def _result(status: RequestStatus) -> dict[str, Any]:
    return {"request_id": status.request_id, "state": status.state, "reason": status.reason,
            "versions": len(status.versions)}


def main() -> None:
    """``python -m flows.deletion_requests [--root DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    for result in answer_requests(root=args.root):
        print(result)


if __name__ == "__main__":
    main()
