"""Prefect flow `deletion-requests`: answer every new request dropped into the inbox.

Under the project's inbox lock (:func:`ssiuu.records.inbox.inbox_lock`: a nightly and a manual run
never answer the same request; the second waits), first resume every request whose answer
was interrupted (a failed stage, a dead process: its status still ``validated`` or
``unlearned``), DVC rerunning only what is stale; then handle every entry of the inbox
(``flows.inbox``), one after the other (:func:`ssiuu.records.inbox.triage`): a file that is not a
regular readable request, a malformed one, a reused id, a taken file name or a subject the
data does not hold ends ``rejected`` with the reason, the entry set aside and nothing else
touched; a valid request moves into ``data.requests_dir``, the pipeline flow runs up to
``report`` (``unlearned``) and then ``register`` (``registered``), so DVC reruns what the
new forget set changes and the workspace's ``dvc.lock`` stays consistent, and its status file
(``flows.status_dir``) records its times, the registered versions, the gate's counts and
its certificate.

Run it with ``python -m flows.deletion_requests``, ``python flows/deletion_requests.py`` or
through the ``nightly-deletion-requests`` deployment (``prefect.yaml``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run by its path: the project root holds `flows`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filelock import Timeout  # noqa: E402
from prefect import flow, get_run_logger  # noqa: E402

from flows.pipeline import pipeline  # noqa: E402
from ssiuu.config import layout  # noqa: E402
from ssiuu.config.errors import DataError  # noqa: E402
from ssiuu.config.params import load_params  # noqa: E402
from ssiuu.records.inbox import (  # noqa: E402
    RequestStatus,
    finish_accept,
    in_progress,
    inbox_entries,
    inbox_lock,
    known_subjects,
    printable,
    read_statuses,
    triage,
    write_status,
)


def _registered(request_id: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    record = layout.read_json(layout.REGISTRY)
    if request_id not in record["requests"]:
        raise DataError(f"{layout.REGISTRY}: the registration does not cover {request_id}")
    versions = [{"model": record["model"], **version} for version in record["versions"]]
    gate = {verdict: sum(v["gate"] == verdict for v in versions)
            for verdict in ("passed", "failed")}
    return versions, gate


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
        lock = inbox_lock(".")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            get_run_logger().info("another run holds the inbox lock (%s): waiting for it",
                                  lock.lock_file)
            lock.acquire()
        try:
            return _answer_inbox()
        finally:
            lock.release()


def _answer_inbox() -> list[dict[str, Any]]:
    logger = get_run_logger()
    params = load_params("params.yaml")
    inbox, status_dir = Path(params.flows.inbox), Path(params.flows.status_dir)
    requests_dir = Path(params.data.requests_dir)
    results, stuck = [], []
    for status in in_progress(read_statuses(status_dir)):
        logger.info("%s: resuming an interrupted answer (state %s)", status.request_id,
                    status.state)
        try:
            finish_accept(status, inbox, requests_dir)
        except (DataError, OSError) as exc:  # kept, with the reason; new entries go on
            status.reason = f"cannot be resumed: {exc}"
            write_status(status, status_dir)
            logger.error("%s %s", status.request_id, status.reason)
            stuck.append(status.request_id)
            continue
        results.append(_result(_unlearn_and_register(status, status_dir)))
    entries = inbox_entries(inbox)
    subjects = known_subjects(params.data) if entries else set()
    for path in entries:
        status = triage(path, status_dir, inbox, requests_dir, subjects)
        if status.state == "rejected":
            logger.warning("%s rejected: %s", printable(path.name), status.reason)
        else:
            logger.info("%s validated; running the pipeline", status.request_id)
            status = _unlearn_and_register(status, status_dir)
        results.append(_result(status))
    if stuck:
        raise DataError(f"{status_dir}: request(s) {', '.join(map(str, stuck))} cannot be "
                        "resumed (their status says why); every new entry was handled")
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
