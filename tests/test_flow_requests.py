"""The deletion-request inbox flow, for real: Prefect's temporary server, `dvc repro` of a
reduced tiny profile in a temporary git repository, MLflow's SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from projects import local_prefect, reduced_project

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def requests_flow(tmp_path_factory):
    """``flows.deletion_requests``, with Prefect's home in a temporary folder, offline."""
    with local_prefect(tmp_path_factory.mktemp("prefect")):
        from flows import deletion_requests

        yield deletion_requests


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return reduced_project(tmp_path_factory.mktemp("inbox") / "repo")


def _drop(root: Path, name: str, content: str | dict) -> Path:
    path = root / "data" / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _status(root: Path, request_id: str) -> dict:
    return json.loads((root / "data" / "request_status" / f"{request_id}.json").read_text())


def _untouched(root: Path) -> dict[Path, bytes]:
    kept = [p for p in (root / "data" / "requests").rglob("*") if p.is_file()]
    return {p: p.read_bytes() for p in kept}


def test_bad_requests_are_rejected_with_the_reason_and_touch_nothing(requests_flow, project):
    before = _untouched(project)
    _drop(project, "a-broken.json", "{not json")
    _drop(project, "b-nobody.json", {"request_id": "req-0100", "received": "2026-11-25",
                                     "subjects": ["Nobody Anywhere"]})
    _drop(project, "c-reused.json", {"request_id": "req-0001", "received": "2026-11-25",
                                     "subjects": ["Nobody Anywhere"]})
    results = requests_flow.answer_requests(root=str(project))
    assert [r["state"] for r in results] == ["rejected"] * 3
    assert "not valid JSON" in _status(project, "a-broken")["reason"]
    unknown = _status(project, "b-nobody")
    assert "subjects[0]: not a data subject" in unknown["reason"]
    assert "Nobody" not in unknown["reason"]  # a reason names fields, never the person
    assert [h["state"] for h in unknown["history"]] == ["received", "rejected"]
    assert "already used" in _status(project, "c-reused")["reason"]
    assert not (project / "data" / "request_status" / "req-0001.json").exists()
    assert sorted(p.name for p in (project / "data" / "inbox" / "rejected").iterdir()) == [
        "a-broken.json", "b-nobody.json", "c-reused.json"]
    assert _untouched(project) == before
    assert not (project / "models").exists() and not (project / "mlflow.db").exists()


def test_a_valid_request_is_answered_once_with_a_registered_version(requests_flow, project):
    from ssiuu.inbox import known_subjects
    from ssiuu.params import load_params

    requested = json.loads((project / "data" / "requests" / "req-0001.json").read_text())
    params = load_params(project / "params.yaml")
    subject = sorted(known_subjects(params.data) - set(requested["subjects"]))[0]
    _drop(project, "req-0002.json", {"request_id": "req-0002", "received": "2026-11-25",
                                     "requested_by": "dpo@example.org", "subjects": [subject]})
    results = requests_flow.answer_requests(root=str(project))
    assert results == [{"request_id": "req-0002", "state": "registered", "reason": None,
                        "versions": 1}]
    status = _status(project, "req-0002")
    assert [h["state"] for h in status["history"]] == [
        "received", "validated", "unlearned", "registered"]
    assert status["versions"][0]["model"] == "ssiuu-scratch-req-0001.req-0002"
    assert status["gate"]["passed"] + status["gate"]["failed"] == 1
    assert (project / status["certificate"]).is_file()
    assert (project / "data" / "requests" / "req-0002.json").is_file()
    manifest = json.loads((project / "data" / "prepared" / "manifest.json").read_text())
    assert [r["id"] for r in manifest["requests"]] == ["req-0001", "req-0002"]
    forget = (project / "data" / "prepared" / "forget.jsonl").read_text()
    assert subject in forget
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    versions = client.search_model_versions("name='ssiuu-scratch-req-0001.req-0002'")
    assert [v.tags["ssiuu.requests"] for v in versions] == ["req-0001,req-0002"]
    again = requests_flow.answer_requests(root=str(project))
    assert again == []  # nothing is answered twice
    assert len(client.search_model_versions("name='ssiuu-scratch-req-0001.req-0002'")) == 1
