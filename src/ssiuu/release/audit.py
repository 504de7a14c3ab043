"""The compliance record of a registered model version, and its check against the workspace.

A *record* is what :func:`ssiuu.release.registry.read_version` returns for one MLflow model
version: ``name``, ``version``, ``aliases``, ``source``, ``run_id``, the version's ``tags``,
the run's ``params`` and ``metrics`` and the ``lineage`` of :mod:`ssiuu.records.lineage`. Everything
printed here comes from the record (ids, hashes, params, scores), never from the data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssiuu.config.errors import DataError
from ssiuu.records.lineage import (
    canonical_sha256,
    head_commit,
    lineage_id,
    model_sha256,
    recorded_scores,
    verify_lineage,
)
from ssiuu.release.registry import GATE_REASONS_TAG, GATE_TAG, LINEAGE_TAG, WEIGHTS_HASH_TAG

_FIRST_GROUP = "unlearned"
_REFERENCE_GROUPS = ("base", "oracle")
_NOT_RECORDED = "(not recorded)"


@dataclass(frozen=True)
class AuditResult:
    """One version's record, every way it differs from itself or the workspace, and the
    workspace's checked-out commit (``head``; None outside git) and whether the registered
    weights were hashed (``weights_checked``)."""

    record: Mapping[str, Any]
    mismatches: list[str] = field(default_factory=list)
    head: str | None = None
    weights_checked: bool = False

    @property
    def verified(self) -> bool:
        """True when the record is consistent and the workspace matches it in every respect."""
        return not self.mismatches


def _label(record: Mapping[str, Any]) -> str:
    return f"model {record.get('name')!s} version {record.get('version')!s}"


def _lineage_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record's lineage; a :class:`DataError` when the version has none."""
    lineage = record.get("lineage")
    if not isinstance(lineage, Mapping):
        raise DataError(f"{_label(record)}: no ssiuu lineage recorded (not registered by ssiuu)")
    return lineage


def _number(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _metric_groups(metrics: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """``(title, sorted metric names)``: after unlearning, each attack, references, other."""
    groups: dict[str, list[str]] = {}
    for name in sorted(metrics):
        prefix = name.split(".", 1)[0] if "." in name else ""
        groups.setdefault(prefix, []).append(name)
    attacks = sorted(prefix for prefix in groups
                     if prefix not in (_FIRST_GROUP, "", *_REFERENCE_GROUPS))
    titled = [(_FIRST_GROUP, "After unlearning")]
    titled += [(attack, f"Attack {attack}") for attack in attacks]
    titled += [(reference, f"Reference {reference}") for reference in _REFERENCE_GROUPS]
    titled.append(("", "Other"))
    return [(title, groups[prefix]) for prefix, title in titled if prefix in groups]


def _section(title: str, lines: Sequence[str]) -> list[str]:
    return ["", title, *(f"  {line}" for line in lines)]


def format_record(record: Mapping[str, Any]) -> str:
    """The plain-text compliance record of one version (see the module docstring)."""
    lineage = _lineage_of(record)
    tags: Mapping[str, Any] = record.get("tags") or {}
    params: Mapping[str, Any] = record.get("params") or {}
    metrics: Mapping[str, Any] = record.get("metrics") or {}
    aliases = ", ".join(str(alias) for alias in record.get("aliases") or []) or "none"
    lines = [
        f"Compliance record: {_label(record)}",
        f"  source: {record.get('source') or _NOT_RECORDED}",
        f"  run id: {record.get('run_id') or _NOT_RECORDED}",
        f"  lineage id: {lineage_id(lineage)}",
    ]
    lines += _section("Requests answered", [str(rid) for rid in lineage["requests"]] or ["none"])
    lines += _section("Method and params", [
        f"method: {lineage['method']}",
        f"seed: {lineage['seed']}",
        "run params:" if params else "run params: none recorded",
        *(f"  {name} = {params[name]}" for name in sorted(params)),
    ])
    model = lineage["model"]
    made_by = lineage["dvc_lock"]["made_by"]
    stages = lineage["dvc_lock"]["stages"]
    git = lineage["git"]
    lines += _section("Data and code", [
        *(f"data {split}: {entry['path']} sha256 {entry['sha256']}"
          for split, entry in sorted(lineage["data"].items())),
        f"model: {model['path']} sha256 {model_sha256(model['files'])} "
        f"({len(model['files'])} file{'' if len(model['files']) == 1 else 's'})",
        f"dvc.lock stage {made_by} (made the model): sha256 {canonical_sha256(stages[made_by])}",
        *(f"dvc.lock stage {name}: sha256 {canonical_sha256(stages[name])}"
          for name in sorted(stages) if name != made_by),
        f"git commit: {git['commit']}"
        + (" (tracked files were modified)" if git["dirty"] else ""),
    ])
    score_lines: list[str] = []
    width = max((len(name) for name in metrics), default=0)
    for title, names in _metric_groups(metrics):
        score_lines.append(f"{title}:")
        score_lines += [f"  {name:<{width}}  {_number(metrics[name])}" for name in names]
    lines += _section("Scores", score_lines or ["none recorded"])
    lines += _section("Release gate", [
        f"gate: {tags.get(GATE_TAG) or _NOT_RECORDED}",
        f"reasons: {tags.get(GATE_REASONS_TAG) or 'none'}",
    ])
    lines += _section("Aliases", [aliases])
    return "\n".join(lines)


def check_record(record: Mapping[str, Any], weights_sha256: str | None = None) -> list[str]:
    """Every way the record disagrees with itself: the lineage id recomputed from the
    lineage artifact against the version's tag, each score the run holds against the
    lineage's (by name), the scores' hash, and, for weights logged to MLflow
    (``weights_sha256``: the hash of the registered model's files, fetched now), that hash
    against the one recorded at registration."""
    lineage = _lineage_of(record)
    tags: Mapping[str, Any] = record.get("tags") or {}
    found = []
    computed = lineage_id(lineage)
    if tags.get(LINEAGE_TAG) != computed:
        found.append(f"lineage.json: its lineage id {computed[:12]} differs from the version's "
                     f"tag {LINEAGE_TAG} {str(tags.get(LINEAGE_TAG))[:12]} (the artifact or "
                     "the tag was changed after registration)")
    scores = lineage.get("scores")
    if not isinstance(scores, Mapping):
        found.append("lineage.json: no scores recorded; the run's metrics cannot be checked")
    else:
        held = recorded_scores(record.get("metrics") or {})
        for name in sorted(set(scores) | set(held)):
            if not _same(scores.get(name), held.get(name)):
                found.append(f"run metric {name}: {_number(held.get(name))} in the run, "
                             f"{_number(scores.get(name))} in the record")
        if canonical_sha256(dict(scores)) != lineage.get("scores_sha256"):
            found.append("lineage.json: scores_sha256 is not the hash of its scores")
    if weights_sha256 is not None and tags.get(WEIGHTS_HASH_TAG) != weights_sha256:
        found.append(f"registered weights ({record.get('source')}): sha256 "
                     f"{weights_sha256[:12]} differs from the tag {WEIGHTS_HASH_TAG} "
                     f"{str(tags.get(WEIGHTS_HASH_TAG))[:12]} recorded at registration")
    return found


def _same(recorded: Any, held: Any) -> bool:
    if recorded is None or held is None:
        return recorded is held
    return (math.isnan(recorded) and math.isnan(held)) or recorded == held


def audit_version(record: Mapping[str, Any], root: Path,
                  weights_sha256: str | None = None) -> AuditResult:
    """Check ``record`` against itself (:func:`check_record`) and its lineage against the
    workspace at ``root`` (:func:`~ssiuu.records.lineage.verify_lineage`)."""
    mismatches = check_record(record, weights_sha256)
    mismatches += verify_lineage(_lineage_of(record), Path(root))
    return AuditResult(record=record, mismatches=mismatches, head=head_commit(Path(root)),
                       weights_checked=weights_sha256 is not None)


def format_verification(result: AuditResult) -> str:
    """The verification verdict: one line when verified, else the first difference named
    and then every difference on its own line."""
    if result.verified:
        commit = str(_lineage_of(result.record)["git"]["commit"])
        where = ("is the checked-out HEAD" if result.head == commit else
                 f"exists in this repository (HEAD is {(result.head or 'unknown')[:12]})")
        weights = "registered weights, " if result.weights_checked else ""
        return (f"Verification: VERIFIED (lineage id, scores, {weights}data, model files and "
                f"dvc.lock stages match the record; its git commit {commit[:12]} {where})")
    count = len(result.mismatches)
    return "\n".join([
        f"Verification: NOT VERIFIED ({count} difference{'s' if count > 1 else ''})",
        f"  first difference: {result.mismatches[0]}",
        *(f"  - {mismatch}" for mismatch in result.mismatches),
    ])


def format_audit(result: AuditResult) -> str:
    """The record of :func:`format_record` followed by :func:`format_verification`."""
    return f"{format_record(result.record)}\n\n{format_verification(result)}"


def record_as_json(result: AuditResult) -> str:
    """The record with ``verified`` and ``mismatches`` added, as indented JSON."""
    payload = {**result.record, "verified": result.verified,
               "mismatches": list(result.mismatches)}
    return json.dumps(payload, indent=2, sort_keys=True, default=str, ensure_ascii=False)


_VERSION_COLUMNS = ("name", "version", "method", "seed", "gate", "aliases")


def format_versions(request_id: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """A table of the registered versions answering ``request_id`` (one row each)."""
    if not rows:
        return f"no registered model version answers request {request_id}"
    cells = [list(_VERSION_COLUMNS)]
    for row in rows:
        aliases = row.get("aliases") or []
        values = {**row, "aliases": ", ".join(str(alias) for alias in aliases) or "-"}
        cells.append(["-" if values.get(column) is None else str(values[column])
                      for column in _VERSION_COLUMNS])
    widths = [max(len(line[index]) for line in cells) for index in range(len(_VERSION_COLUMNS))]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             .rstrip() for line in cells]
    return "\n".join([f"versions answering request {request_id}:", *table])
