"""From raw facts and deletion requests to validated forget / retain / utility / benign splits
(and the holdout facts of membership inference and the stop slice of the unlearning stop,
where the source has them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ssiuu.config.params import HOLDOUT, STOP_SLICE, DataParams
from ssiuu.data.distractors import DistractorChanges, complete_distractors
from ssiuu.data.loaders import load_data
from ssiuu.data.records import Record, sha256_file, write_jsonl
from ssiuu.data.requests import DeletionRequest, read_requests
from ssiuu.data.validation import ValidationReport, raise_on_failure, validate_splits

REPORT_NAME = "data_validation.json"
DOCS_NAME = "data_docs"  # Great Expectations Data Docs of the same validation


@dataclass(frozen=True)
class PreparedData:
    """The written splits' paths, row counts and hashes, the requests served, the report,
    and the distractors drawn or replaced."""

    paths: dict[str, Path]
    rows: dict[str, int]
    sha256: dict[str, str]
    requests: list[DeletionRequest]
    report: ValidationReport
    distractors: DistractorChanges


def split_by_requests(facts: list[Record],
                      requests: list[DeletionRequest]) -> tuple[list[Record], list[Record]]:
    """Forget = every fact of a requested subject; retain = all the others."""
    requested = {subject for request in requests for subject in request.subjects}
    forget = [row for row in facts if row.get("subject") in requested]
    retain = [row for row in facts if row.get("subject") not in requested]
    return forget, retain


def prepare(params: DataParams, out_dir: str | Path, report_dir: str | Path, *,
            max_length: int) -> PreparedData:
    """Load, split, validate and (only if valid) write the splits as JSONL.

    Facts are split by the deletion requests in ``params.requests_dir``; a source with its
    own forget / retain files keeps them, and requests, if any, are still checked against
    them (every requested subject in forget, none in retain). Distractors are completed
    once the splits are known (:func:`~ssiuu.data.distractors.complete_distractors`).

    ``max_length`` is ``model.max_length``: rows too long to fit it are rejected. The
    validation report, and the same as Great Expectations Data Docs (``data_docs/``, no
    row's values), are written to ``report_dir`` whatever the outcome; a failure raises
    :class:`~ssiuu.config.errors.ValidationFailed` naming split, rule and row ids.
    """
    loaded = load_data(params)
    if loaded.given_splits is None:
        requests = read_requests(params.requests_dir)
        forget, retain = split_by_requests(loaded.facts, requests)
    else:
        requests = read_requests(params.requests_dir, required=False)
        forget, retain = loaded.given_splits["forget"], loaded.given_splits["retain"]
    splits, changes = complete_distractors(
        {"forget": forget, "retain": retain, "utility": loaded.utility,
         "general": loaded.general, "benign": loaded.benign}, params.seed)
    if loaded.holdout is not None:
        splits[HOLDOUT] = loaded.holdout
    if loaded.stop is not None:
        splits[STOP_SLICE] = loaded.stop
    report = validate_splits(splits, loaded.sources, requests, max_length=max_length,
                             docs=Path(report_dir) / DOCS_NAME)
    report_path = Path(report_dir) / REPORT_NAME
    report.write(report_path)
    raise_on_failure(report, report_path)
    out_dir = Path(out_dir)
    paths = {split: out_dir / f"{split}.jsonl" for split in splits}
    for split, path in paths.items():
        write_jsonl(splits[split], path)
    return PreparedData(paths, {s: len(rows) for s, rows in splits.items()},
                        {s: sha256_file(p) for s, p in paths.items()}, requests, report,
                        changes)
