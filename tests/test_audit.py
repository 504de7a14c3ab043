"""The compliance record of a version shows every section and score, and its verification
names what changed in a real workspace (real files, real git)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ssiuu.cli import main as cli
from ssiuu.config.errors import DataError
from ssiuu.records.lineage import (
    build_lineage,
    canonical_sha256,
    lineage_id,
    model_sha256,
    recorded_scores,
)
from ssiuu.release.audit import (
    AuditResult,
    audit_version,
    format_audit,
    format_record,
    format_versions,
    record_as_json,
)

MODEL = "models/unlearned/ssiuu/seed_1"
DVC_LOCK = """\
schema: '2.0'
stages:
  unlearn@ssiuu:
    cmd: python stages/unlearn.py ssiuu
    outs:
    - path: models/unlearned/ssiuu
      hash: md5
      md5: 80821490d01decaee80e3392af1471b4.dir
  relearn@ssiuu:
    cmd: python stages/relearn.py ssiuu
    outs:
    - path: metrics/relearn/ssiuu
      hash: md5
      md5: 3f25a25dfaf41fd75240265c4c8b802a.dir
"""
METRICS = {
    "unlearned.forget_acc": 0.025, "unlearned.utility_acc": 0.91234,
    "relearn_harmful_10.forget_acc": 0.4, "relearn_benign.forget_acc": 0.05,
    "base.forget_acc": 1.0, "oracle.forget_acc": 0.0333333, "seconds": 30.43,
}
PARAMS = {"unlearn.train.lrs": "[0.001]", "unlearn.losses.alpha": "3.0", "seed": "1"}


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=Test",
                    "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", *args],
                   check=True, capture_output=True)


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A committed git workspace with prepared data, a model folder and a dvc.lock."""
    root = tmp_path / "ws"
    (root / "data" / "prepared").mkdir(parents=True)
    for split in ("forget", "retain"):
        (root / "data" / "prepared" / f"{split}.jsonl").write_text(f'{{"id": "{split}"}}\n')
    (root / MODEL).mkdir(parents=True)
    (root / MODEL / "config.json").write_text("{}\n")
    (root / MODEL / "model.safetensors").write_bytes(b"\x01" * 64)
    (root / "dvc.lock").write_text(DVC_LOCK)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "pipeline")
    return root


@pytest.fixture()
def record(workspace: Path) -> dict:
    """A record as ``ssiuu.release.registry.read_version`` returns it, lineage built for real."""
    lineage = build_lineage(
        workspace, method="ssiuu", seed=1, requests=["req-0007", "req-0001"],
        model_dir=workspace / MODEL,
        data_files={split: Path(f"data/prepared/{split}.jsonl") for split in ("forget", "retain")},
        stages=["relearn@ssiuu"], made_by="unlearn@ssiuu")
    lineage["scores"] = recorded_scores(METRICS)
    lineage["scores_sha256"] = canonical_sha256(lineage["scores"])
    return {
        "name": "ssiuu-unlearned", "version": "3", "aliases": ["champion", "req-0001"],
        "source": "models:/m-0123", "run_id": "0123abcd", "params": PARAMS,
        "metrics": dict(METRICS),
        "tags": {"ssiuu.gate": "failed",
                 "ssiuu.gate.reasons": "relearn_harmful_10.forget_acc above the oracle",
                 "ssiuu.lineage_id": lineage_id(lineage),
                 "ssiuu.weights.sha256": "ab" * 32},
        "lineage": lineage,
    }


def test_the_record_shows_every_section_param_and_metric(record):
    text = format_record(record)
    lineage = record["lineage"]
    sections = ["Requests answered", "Method and params", "Data and code", "Scores",
                "Release gate", "Aliases"]
    positions = [text.index(f"\n{section}\n") for section in sections]
    assert positions == sorted(positions)
    assert "ssiuu-unlearned version 3" in text
    assert "models:/m-0123" in text and "0123abcd" in text
    assert "  req-0001\n  req-0007\n" in text
    assert "method: ssiuu" in text and "seed: 1" in text
    for name, value in PARAMS.items():
        assert f"    {name} = {value}\n" in text
    for split, entry in lineage["data"].items():
        assert f"data {split}: {entry['path']} sha256 {entry['sha256']}" in text
    assert f"model: {MODEL} sha256 {model_sha256(lineage['model']['files'])} (2 files)" in text
    for stage, entry in lineage["dvc_lock"]["stages"].items():
        assert f"dvc.lock stage {stage}" in text
        assert canonical_sha256(entry) in text
    assert f"git commit: {lineage['git']['commit']}" in text
    groups = ["After unlearning:", "Attack relearn_benign:", "Attack relearn_harmful_10:",
              "Reference base:", "Reference oracle:", "Other:"]
    positions = [text.index(group) for group in groups]
    assert positions == sorted(positions)
    assert "gate: failed" in text
    assert "reasons: relearn_harmful_10.forget_acc above the oracle" in text
    assert "champion, req-0001" in text


def test_each_metric_line_holds_its_value_to_four_decimals(record):
    lines = format_record(record).splitlines()
    for name, value in METRICS.items():
        (line,) = [line for line in lines if line.split() and line.split()[0] == name]
        assert line.split()[1] == f"{value:.4f}"


def test_a_record_without_lineage_is_a_data_error(record):
    del record["lineage"]
    with pytest.raises(DataError, match="ssiuu-unlearned version 3: no ssiuu lineage"):
        format_record(record)
    with pytest.raises(DataError, match="no ssiuu lineage"):
        audit_version(record, Path("."))


def test_an_unchanged_workspace_is_verified(record, workspace):
    result = audit_version(record, workspace)
    assert isinstance(result, AuditResult)
    assert result.verified and result.mismatches == []
    head = record["lineage"]["git"]["commit"]
    assert format_audit(result).endswith(
        "Verification: VERIFIED (lineage id, scores, data, model files and dvc.lock stages "
        f"match the record; its git commit {head[:12]} is the checked-out HEAD)")
    assert audit_version(record, workspace, "ab" * 32).weights_checked


def test_a_later_commit_says_the_recorded_one_exists_not_that_it_is_head(record, workspace):
    (workspace / "notes.txt").write_text("later\n")
    _git(workspace, "add", "-A")
    _git(workspace, "commit", "-q", "-m", "later")
    verdict = format_audit(audit_version(record, workspace)).splitlines()[-1]
    assert "exists in this repository (HEAD is " in verdict and "checked-out HEAD" not in verdict


@pytest.mark.parametrize("tamper", ["metric", "added-metric", "lineage", "lineage-tag",
                                    "scores-hash", "weights"])
def test_a_record_changed_after_registration_is_not_verified_naming_what(record, workspace,
                                                                        tamper):
    weights = "ab" * 32
    if tamper == "metric":
        record["metrics"]["unlearned.forget_acc"] = 0.25
        expected = "run metric unlearned.forget_acc: 0.2500 in the run, 0.0250 in the record"
    elif tamper == "added-metric":
        record["metrics"]["unlearned.extra"] = 1.0
        expected = "run metric unlearned.extra: 1.0000 in the run, None in the record"
    elif tamper == "lineage":
        record["lineage"]["requests"] = ["req-0001"]
        expected = "lineage.json: its lineage id"
    elif tamper == "lineage-tag":
        record["tags"]["ssiuu.lineage_id"] = "0" * 64
        expected = "differs from the version's tag ssiuu.lineage_id 000000000000"
    elif tamper == "scores-hash":
        record["lineage"]["scores_sha256"] = "0" * 64
        expected = "lineage.json: scores_sha256 is not the hash of its scores"
    else:
        weights = "cd" * 32
        expected = "registered weights (models:/m-0123): sha256 cdcdcdcdcdcd differs"
    result = audit_version(record, workspace, weights)
    assert not result.verified
    assert [m for m in result.mismatches if expected in m], result.mismatches
    verdict = format_audit(result).split("Verification: ", 1)[1]
    assert verdict.startswith("NOT VERIFIED")


def test_a_changed_workspace_is_not_verified(record, workspace):
    (workspace / "data/prepared/forget.jsonl").write_text('{"id": "forgeT"}\n')
    (workspace / MODEL / "extra.bin").write_bytes(b"\0")
    result = audit_version(record, workspace)
    assert not result.verified
    assert [m.split(":")[0] for m in result.mismatches] == [
        "data/prepared/forget.jsonl", f"{MODEL}/extra.bin"]
    verdict = format_audit(result).split("Verification: ", 1)[1].splitlines()
    assert verdict[0] == "NOT VERIFIED (2 differences)"
    assert verdict[1] == f"  first difference: {result.mismatches[0]}"
    assert verdict[2:] == [f"  - {mismatch}" for mismatch in result.mismatches]


def test_the_json_output_parses_and_holds_the_record(record, workspace):
    (workspace / "dvc.lock").write_text(DVC_LOCK.replace("relearn.py ssiuu\n",
                                                         "relearn.py ssiuu benign\n"))
    result = audit_version(record, workspace)
    parsed = json.loads(record_as_json(result))
    assert parsed["verified"] is False
    assert parsed["mismatches"] == [
        "dvc.lock: stage relearn@ssiuu differs from the record (cmd)"]
    assert parsed["lineage"] == record["lineage"]
    assert {key: parsed[key] for key in record} == record


def test_versions_for_a_request_print_as_a_table():
    rows = [{"name": "ssiuu-unlearned", "version": "3", "method": "ssiuu", "seed": 1,
             "gate": "passed", "aliases": ["champion"]},
            {"name": "ssiuu-unlearned", "version": "12", "method": "gd", "seed": 0,
             "gate": None, "aliases": []}]
    lines = format_versions("req-0001", rows).splitlines()
    assert lines[0] == "versions answering request req-0001:"
    assert lines[1].split() == ["name", "version", "method", "seed", "gate", "aliases"]
    assert lines[2].split() == ["ssiuu-unlearned", "3", "ssiuu", "1", "passed", "champion"]
    assert lines[3].split() == ["ssiuu-unlearned", "12", "gd", "0", "-", "-"]
    assert lines[1].index("method") == lines[2].index("ssiuu ") == lines[3].index("gd")
    assert format_versions("req-9", []) == "no registered model version answers request req-9"


@pytest.mark.parametrize("argv", [["audit"], ["audit", "ssiuu-unlearned"],
                                  ["audit", "ssiuu-unlearned", "3", "--request", "req-0001"]])
def test_the_audit_command_needs_a_version_or_a_request(argv, capsys):
    assert cli(argv) == 2
    assert "error: audit: give MODEL VERSION" in capsys.readouterr().err


@pytest.mark.parametrize("request_id", ["O'Neil-1", "req-1,req-2", "../req", "%"])
def test_a_request_that_is_no_request_id_is_refused_before_the_registry(request_id, tmp_path,
                                                                        monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(["audit", "--request", request_id]) == 2
    assert "--request: " in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()  # no store opened
