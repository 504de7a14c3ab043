"""A lineage records the data, weights, dvc.lock entries and commit of a model, and
verify_lineage names every file of a real workspace (real files, real git) that changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ssiuu.config.errors import DataError
from ssiuu.data.records import sha256_file
from ssiuu.records.lineage import (
    build_lineage,
    canonical_sha256,
    lineage_id,
    lineage_tags,
    model_sha256,
    verify_lineage,
)

SPLITS = ("forget", "retain", "utility", "benign")
MODEL = "models/unlearned/gd/seed_0"
DVC_LOCK = """\
schema: '2.0'
stages:
  prepare:
    cmd: python stages/prepare.py
    deps:
    - path: data/inputs/data.json
      hash: md5
      md5: 1a3946f04961cdb6dde1925d071ac9d7
      size: 43
    outs:
    - path: data/prepared
      hash: md5
      md5: 0cd678359ebb287739e5af7c7f31d763.dir
      size: 87322
      nfiles: 4
  unlearn@gd:
    cmd: python stages/unlearn.py gd
    deps:
    - path: data/prepared
      hash: md5
      md5: 0cd678359ebb287739e5af7c7f31d763.dir
      size: 87322
      nfiles: 4
    params:
      params.yaml:
        relearn.train:
          lrs:
          - 3e-05
          - 0.0001
        received: 2026-11-20
    outs:
    - path: models/unlearned/gd
      hash: md5
      md5: 80821490d01decaee80e3392af1471b4.dir
      size: 13303497
      nfiles: 18
"""


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=Test", "-c", "user.email=test@example.com",
         "-c", "commit.gpgsign=false", *args],
        check=True, capture_output=True, text=True).stdout.strip()


def _commit(root: Path, message: str) -> str:
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", message)
    return _git(root, "rev-parse", "HEAD")


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A git repository laid out like the DVC project: data and models are git-ignored."""
    root = tmp_path / "ws"
    (root / "data" / "prepared").mkdir(parents=True)
    for split in SPLITS:
        (root / "data" / "prepared" / f"{split}.jsonl").write_text(
            f'{{"id": "{split}-0", "question": "q", "answer": "a"}}\n')
    model = root / MODEL
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 64}\n')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (model / "tokenizer.json").write_text('{"model": {}}\n')
    (root / "dvc.lock").write_text(DVC_LOCK)
    (root / "README.md").write_text("workspace\n")
    (root / ".gitignore").write_text("/data/prepared\n/models\n")
    _git(root, "init", "-q")
    _commit(root, "pipeline")
    return root


def _build(root: Path, **overrides) -> dict:
    arguments = {
        "method": "gd", "seed": 0, "requests": ["req-0002", "req-0001"],
        "model_dir": root / MODEL,
        "data_files": {split: Path(f"data/prepared/{split}.jsonl") for split in SPLITS},
        "stages": ["prepare"], "made_by": "unlearn@gd",
    }
    return build_lineage(root, **{**arguments, **overrides})


def _flip_byte(path: Path, index: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[index] ^= 1
    path.write_bytes(bytes(data))


def test_lineage_records_everything_and_verifies(workspace):
    lineage = _build(workspace)
    head = _git(workspace, "rev-parse", "HEAD")
    assert lineage["schema"] == 1
    assert (lineage["method"], lineage["seed"]) == ("gd", 0)
    assert lineage["requests"] == ["req-0001", "req-0002"]
    forget = workspace / "data/prepared/forget.jsonl"
    assert lineage["data"]["forget"] == {"path": "data/prepared/forget.jsonl",
                                         "sha256": sha256_file(forget)}
    assert lineage["model"]["path"] == MODEL
    assert list(lineage["model"]["files"]) == ["config.json", "model.safetensors",
                                               "tokenizer.json"]
    assert lineage["model"]["files"]["model.safetensors"] == sha256_file(
        workspace / MODEL / "model.safetensors")
    assert lineage["dvc_lock"]["made_by"] == "unlearn@gd"
    assert set(lineage["dvc_lock"]["stages"]) == {"unlearn@gd", "prepare"}
    params = lineage["dvc_lock"]["stages"]["unlearn@gd"]["params"]["params.yaml"]
    assert params["relearn.train"]["lrs"] == [3e-05, 0.0001]  # YAML 1.2, as DVC reads it
    assert params["received"] == "2026-11-20"
    assert lineage["git"] == {"commit": head, "dirty": False}
    assert verify_lineage(lineage, workspace) == []


def test_tags_are_flat_strings_within_mlflow_limits(workspace):
    lineage = _build(workspace)
    tags = lineage_tags(lineage)
    assert tags["ssiuu.requests"] == "req-0001,req-0002"
    assert (tags["ssiuu.method"], tags["ssiuu.seed"]) == ("gd", "0")
    for split in SPLITS:
        assert tags[f"ssiuu.data.{split}.sha256"] == lineage["data"][split]["sha256"]
    assert tags["ssiuu.model.sha256"] == model_sha256(lineage["model"]["files"])
    assert tags["ssiuu.model.path"] == MODEL
    assert tags["ssiuu.dvc_lock.stage"] == "unlearn@gd"
    assert tags["ssiuu.dvc_lock.sha256"] == canonical_sha256(
        lineage["dvc_lock"]["stages"]["unlearn@gd"])
    assert tags["ssiuu.git.commit"] == lineage["git"]["commit"]
    assert tags["ssiuu.git.dirty"] == "false"
    many = lineage_tags({**lineage, "requests": [f"req-{i:06d}" for i in range(2000)]})
    assert all(isinstance(value, str) and len(value) <= 5000 for value in many.values())
    assert many["ssiuu.requests"].startswith("req-000000,req-000001,")
    assert many["ssiuu.requests"].endswith(" more)")


def test_one_changed_byte_of_the_forget_split_is_named(workspace):
    lineage = _build(workspace)
    _flip_byte(workspace / "data/prepared/forget.jsonl")
    found = verify_lineage(lineage, workspace)
    assert len(found) == 1
    assert found[0].startswith("data/prepared/forget.jsonl: sha256 differs (recorded ")


def test_a_missing_split_is_named(workspace):
    lineage = _build(workspace)
    (workspace / "data/prepared/retain.jsonl").unlink()
    assert verify_lineage(lineage, workspace) == [
        f"data/prepared/retain.jsonl: missing (recorded sha256 "
        f"{lineage['data']['retain']['sha256'][:8]}…)"]


def test_changed_removed_and_added_weight_files_are_named(workspace):
    lineage = _build(workspace)
    model = workspace / MODEL
    _flip_byte(model / "model.safetensors", 100)
    (model / "tokenizer.json").unlink()
    (model / "adapter.safetensors").write_bytes(b"\0" * 16)
    found = verify_lineage(lineage, workspace)
    assert found == [
        f"{MODEL}/adapter.safetensors: extra file, not in the record",
        f"{MODEL}/model.safetensors: sha256 differs (recorded "
        f"{lineage['model']['files']['model.safetensors'][:8]}…, "
        f"now {sha256_file(model / 'model.safetensors')[:8]}…)",
        f"{MODEL}/tokenizer.json: missing (recorded sha256 "
        f"{lineage['model']['files']['tokenizer.json'][:8]}…)",
    ]


def test_weights_swapped_between_models_are_named(workspace):
    lineage = _build(workspace)
    other = workspace / "models/unlearned/npo/seed_0"
    other.mkdir(parents=True)
    (other / "model.safetensors").write_bytes(bytes(reversed(range(256))) * 4)
    (workspace / MODEL / "model.safetensors").write_bytes(
        (other / "model.safetensors").read_bytes())
    found = verify_lineage(lineage, workspace)
    assert len(found) == 1
    assert found[0].startswith(f"{MODEL}/model.safetensors: sha256 differs")


def test_an_edited_dvc_lock_entry_names_the_file_the_stage_and_the_keys(workspace):
    lineage = _build(workspace)
    lock = workspace / "dvc.lock"
    lock.write_text(lock.read_text().replace("80821490d01decaee80e3392af1471b4.dir",
                                             "00000000d01decaee80e3392af1471b4.dir"))
    assert verify_lineage(lineage, workspace) == [
        "dvc.lock: stage unlearn@gd differs from the record (outs)"]
    lock.write_text(DVC_LOCK.split("  unlearn@gd:")[0])
    assert verify_lineage(lineage, workspace) == [
        "dvc.lock: stage unlearn@gd missing (recorded in the lineage)"]


def test_the_recorded_commit_must_exist(workspace):
    lineage = _build(workspace)
    unknown = {**lineage, "git": {"commit": "0" * 40, "dirty": False}}
    assert verify_lineage(unknown, workspace) == [
        f"git: commit {'0' * 12} not found in the repository at {workspace}"]
    none = {**lineage, "git": {"commit": "unknown", "dirty": False}}
    found = verify_lineage(none, workspace)
    assert len(found) == 1
    assert found[0].startswith("git: the record has no commit")


def test_outside_git_the_commit_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "plain"
    (root / "data").mkdir(parents=True)
    (root / "data" / "forget.jsonl").write_text("{}\n")
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text("{}\n")
    (root / "dvc.lock").write_text(DVC_LOCK)
    lineage = build_lineage(root, method="gd", seed=1, requests=["req-0001"],
                            model_dir=Path("model"),
                            data_files={"forget": root / "data/forget.jsonl"},
                            stages=[], made_by="unlearn@gd")
    assert lineage["git"] == {"commit": "unknown", "dirty": False}
    assert lineage["data"]["forget"]["path"] == "data/forget.jsonl"


def test_dirty_means_tracked_files_modified(workspace):
    (workspace / "untracked.txt").write_text("new\n")
    assert _build(workspace)["git"]["dirty"] is False
    (workspace / "README.md").write_text("edited\n")
    assert _build(workspace)["git"]["dirty"] is True


def test_lineage_id_ignores_git_but_not_data(workspace):
    lineage = _build(workspace)
    (workspace / "README.md").write_text("docs only\n")
    commit = _commit(workspace, "docs")
    after_docs = _build(workspace)
    assert after_docs["git"]["commit"] == commit != lineage["git"]["commit"]
    assert lineage_id(after_docs) == lineage_id(lineage)
    assert verify_lineage(lineage, workspace) == []  # the older commit still exists
    _flip_byte(workspace / "data/prepared/utility.jsonl")
    assert lineage_id(_build(workspace)) != lineage_id(lineage)


def test_a_stage_missing_from_dvc_lock_is_a_data_error(workspace):
    with pytest.raises(DataError, match=r"dvc\.lock: no stage 'relearn@gd'"):
        _build(workspace, stages=["prepare", "relearn@gd"])
    with pytest.raises(DataError, match=r"dvc\.lock: no stage 'unlearn@npo'"):
        _build(workspace, made_by="unlearn@npo")


def test_missing_inputs_are_data_errors(workspace, tmp_path):
    with pytest.raises(DataError, match="models/unlearned/ga/seed_0: model folder not found"):
        _build(workspace, model_dir=workspace / "models/unlearned/ga/seed_0")
    with pytest.raises(DataError, match="not inside the workspace"):
        _build(workspace, data_files={"forget": tmp_path / "elsewhere.jsonl"})
    (workspace / "dvc.lock").unlink()
    with pytest.raises(DataError, match=r"dvc\.lock: not found"):
        _build(workspace)


def test_an_unknown_schema_is_refused(workspace):
    lineage = {**_build(workspace), "schema": 2}
    with pytest.raises(DataError, match="schema 2 is not supported"):
        verify_lineage(lineage, workspace)
