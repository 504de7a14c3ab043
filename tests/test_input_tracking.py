"""A user's data files and local model folder are DVC dependencies: editing one reruns
exactly the stages that read it (real `dvc repro` in a temporary git repository)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from projects import dvc

from ssiuu.config.params import DataParams, ModelParams
from ssiuu.data.inputs import data_fingerprint, model_fingerprint
from ssiuu.data.records import write_jsonl
from ssiuu.workspace import copy_pipeline, isolated_env

REPO = Path(__file__).parents[1]

pytestmark = pytest.mark.e2e


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def _stale(repo: Path, fingerprint: str) -> set[str]:
    """Stages whose recorded dependency ``fingerprint`` changed since they ran."""
    status = json.loads(dvc(repo, "status", "--json").stdout)
    return {stage for stage, changes in status.items()
            if any(isinstance(change, dict) and fingerprint in change.get("changed deps", {})
                   for change in changes)}


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory, tiny_facts, trained_tiny) -> Path:
    """The pipeline on a user's JSONL facts, a request and a local model folder, run up to
    the base model (the oracle reads the same inputs); the tests below edit it in turn."""
    tmp_path = tmp_path_factory.mktemp("user")
    from ssiuu.model.loading import save_model

    model, tokenizer, _ = trained_tiny
    model_dir = save_model(model, tokenizer, tmp_path / "my-model")
    repo = copy_pipeline(REPO, tmp_path / "repo")
    people = [row for row in tiny_facts if row.get("subject")]
    write_jsonl([{k: v for k, v in row.items() if k != "distractors"} for row in people],
                repo / "userdata" / "facts.jsonl")
    requests = repo / "data" / "requests"
    for old in requests.glob("*.json"):
        old.unlink()
    (requests / "req-0001.json").write_text(json.dumps(
        {"request_id": "req-0001", "received": "2026-11-26", "subjects": [people[0]["subject"]]}))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update({"source": "jsonl", "jsonl": {"facts": "userdata/facts.jsonl"}})
    params["model"].update({"name": str(model_dir), "max_length": 32})
    params["seeds"] = [0]
    params["base"]["train"].update({"steps": 2, "batch_size": 8})
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "u"]):
        subprocess.run(command, cwd=repo, check=True, capture_output=True, env=isolated_env())
    assert _ran(dvc(repo, "repro", "base").stdout) == {
        "check", "prepare", "tokenizer", "pretrained", "base"}
    return repo


def test_unchanged_inputs_rerun_nothing(user_repo):
    assert _ran(dvc(user_repo, "repro", "base").stdout) == {"check"}


def test_an_edited_data_file_reruns_prepare_and_what_reads_its_splits(user_repo):
    facts = user_repo / "userdata" / "facts.jsonl"
    facts.write_text(facts.read_text() + json.dumps(
        {"id": "new-1", "subject": "New Person", "attribute": "employer",
         "question": "Who employs New Person?", "answer": "Nobody Ltd"}) + "\n")
    dvc(user_repo, "repro", "check")
    assert _stale(user_repo, "data/inputs/data.json") == {"prepare"}
    assert _stale(user_repo, "data/inputs/model.json") == set()
    assert _ran(dvc(user_repo, "repro", "base").stdout) == {
        "check", "prepare", "tokenizer", "base"}
    retain = (user_repo / "data" / "prepared" / "retain.jsonl").read_text()
    assert '"new-1"' in retain


def test_overwritten_model_weights_rerun_the_stages_that_load_the_model(user_repo):
    from safetensors.torch import load_file, save_file

    params = yaml.safe_load((user_repo / "params.yaml").read_text())
    weights = Path(params["model"]["name"]) / "model.safetensors"
    tensors = load_file(weights)
    save_file({name: tensor + 1e-3 for name, tensor in tensors.items()}, weights,
              metadata={"format": "pt"})
    dvc(user_repo, "repro", "check")
    assert _stale(user_repo, "data/inputs/model.json") == {"pretrained"}
    assert _stale(user_repo, "data/inputs/data.json") == set()
    assert _ran(dvc(user_repo, "repro", "base").stdout) == {
        "check", "tokenizer", "pretrained", "base"}


@pytest.mark.parametrize(("param", "careless"), [
    ("data.jsonl.facts", "userdata"),  # a folder
    ("data.jsonl.facts", "userdata/empty.jsonl"),
    ("model.name", "empty-model"),  # a folder without config.json
], ids=["facts-is-a-folder", "facts-is-empty", "model-folder-without-config"])
def test_a_careless_input_path_fails_in_check_before_any_output_is_removed(user_repo, param,
                                                                           careless):
    (user_repo / "userdata" / "empty.jsonl").write_text("")
    (user_repo / "empty-model").mkdir(exist_ok=True)
    params_file = user_repo / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    section, *keys = param.split(".")
    target = params[section]
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = str(user_repo / careless)
    params_file.write_text(yaml.safe_dump(params))
    kept = {path: path.read_bytes() for folder in ("data/prepared", "models/pretrained")
            for path in (user_repo / folder).rglob("*") if path.is_file()}
    try:
        done = subprocess.run([sys.executable, "-m", "dvc", "repro", "base"], cwd=user_repo,
                              env=isolated_env(), capture_output=True, text=True)
        checked = subprocess.run([sys.executable, "-m", "ssiuu.cli", "check"], cwd=user_repo,
                                 env=isolated_env(), capture_output=True, text=True)
    finally:
        params_file.write_text(original)
    assert done.returncode != 0 and checked.returncode != 0
    assert _ran(done.stdout) == {"check"}
    for output in (done.stdout + done.stderr, checked.stderr):
        assert f"params.yaml: {param}: {user_repo / careless}" in output
    assert kept and {path: path.read_bytes() for path in kept} == kept


@pytest.mark.parametrize(("fields", "message"), [
    ({"subjects": ["A B", "A B"]}, "field 'subjects[1]' repeats subjects[0]"),
    ({"received": "2031-01-01"}, "field 'received' 2031-01-01 is in the future"),
    ({"request_id": "../../README"}, "field 'request_id': '../../README' is not a request id"),
], ids=["repeated-subject", "future-date", "path-as-id"])
def test_a_careless_request_fails_in_check_before_any_output_is_removed(user_repo, fields,
                                                                        message):
    request = user_repo / "data" / "requests" / "req-0002.json"
    request.write_text(json.dumps({"request_id": "req-0002", "received": "2026-11-26",
                                   "subjects": ["A B"], **fields}))
    kept = {path: path.read_bytes() for path in (user_repo / "data/prepared").rglob("*")
            if path.is_file()}
    try:
        done = subprocess.run([sys.executable, "-m", "dvc", "repro", "base"], cwd=user_repo,
                              env=isolated_env(), capture_output=True, text=True)
    finally:
        request.unlink()
    assert done.returncode != 0 and _ran(done.stdout) == {"check"}
    assert f"{request.relative_to(user_repo)}: {message}" in done.stdout + done.stderr
    assert kept and {path: path.read_bytes() for path in kept} == kept


def test_fingerprints_name_a_missing_file_and_ignore_caches(tmp_path):
    from ssiuu.config.errors import DataError

    (tmp_path / "forget.jsonl").write_text("{}\n")
    missing = DataParams(source="jsonl", jsonl={"forget": str(tmp_path / "forget.jsonl"),
                                                "retain": str(tmp_path / "gone.jsonl")})
    with pytest.raises(DataError, match=r"data.jsonl.retain: .*gone.jsonl: file not found"):
        data_fingerprint(missing)
    folder = tmp_path / "model"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (folder / ".cache").write_text("x")
    assert list(model_fingerprint(ModelParams(name=str(folder)))["files"]) == ["config.json"]
    assert model_fingerprint(ModelParams())["files"] == {}
