"""The deletion-request inbox flow, for real: Prefect's temporary server, `dvc repro` of a
reduced tiny profile in a temporary git repository, MLflow's SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from projects import flow_module, project_fixture

pytestmark = pytest.mark.e2e


requests_flow = flow_module("deletion_requests")
project = project_fixture("inbox")


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


def test_two_requests_in_one_run_are_answered_in_turn_each_with_its_record(requests_flow,
                                                                           project):
    from mlflow import MlflowClient

    from ssiuu.inbox import known_subjects
    from ssiuu.params import load_params

    requested = json.loads((project / "data" / "requests" / "req-0001.json").read_text())
    params = load_params(project / "params.yaml")
    first, second = sorted(known_subjects(params.data) - set(requested["subjects"]))[:2]
    for request_id, subject in (("req-0002", first), ("req-0003", second)):
        _drop(project, f"{request_id}.json", {"request_id": request_id, "subjects": [subject],
                                              "received": "2026-11-25",
                                              "requested_by": "dpo@example.org"})
    results = requests_flow.answer_requests(root=str(project))
    assert results == [{"request_id": f"req-000{n}", "state": "registered", "reason": None,
                        "versions": 1} for n in (2, 3)]
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for request_id, model, requests in (
            ("req-0002", "ssiuu-scratch-req-0001.req-0002", "req-0001,req-0002"),
            ("req-0003", "ssiuu-scratch-req-0001.req-0002.req-0003",
             "req-0001,req-0002,req-0003")):
        status = _status(project, request_id)
        assert [h["state"] for h in status["history"]] == [
            "received", "validated", "unlearned", "registered"]
        assert status["versions"][0]["model"] == model
        assert status["gate"]["passed"] + status["gate"]["failed"] == 1
        assert (project / status["certificate"]).is_file()
        assert (project / "data" / "requests" / f"{request_id}.json").is_file()
        versions = client.search_model_versions(f"name='{model}'")
        assert [v.tags["ssiuu.requests"] for v in versions] == [requests]
    manifest = json.loads((project / "data" / "prepared" / "manifest.json").read_text())
    assert [r["id"] for r in manifest["requests"]] == ["req-0001", "req-0002", "req-0003"]
    forget = (project / "data" / "prepared" / "forget.jsonl").read_text()
    assert first in forget and second in forget
    assert requests_flow.answer_requests(root=str(project)) == []  # nothing answered twice
    assert len(client.search_model_versions(
        "name='ssiuu-scratch-req-0001.req-0002.req-0003'")) == 1


def test_an_interrupted_answer_is_resumed_and_registers_nothing_twice(requests_flow,
                                                                     project):
    from mlflow import MlflowClient

    path = project / "data" / "request_status" / "req-0003.json"
    status = json.loads(path.read_text())
    assert status["history"][-1]["state"] == "registered"  # answered by the previous test
    status.update(history=status["history"][:3], versions=[], gate=None, certificate=None)
    path.write_text(json.dumps(status))  # as if the process died before `register` ended
    results = requests_flow.answer_requests(root=str(project))
    assert results == [{"request_id": "req-0003", "state": "registered", "reason": None,
                        "versions": 1}]
    resumed = _status(project, "req-0003")
    assert [h["state"] for h in resumed["history"]] == [
        "received", "validated", "unlearned", "registered"]
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert len(client.search_model_versions(
        "name='ssiuu-scratch-req-0001.req-0002.req-0003'")) == 1
    assert requests_flow.answer_requests(root=str(project)) == []


def test_a_failed_pipeline_leaves_the_request_validated_with_the_reason(requests_flow,
                                                                       project, monkeypatch):
    from flows.pipeline import StageFailed
    from ssiuu.inbox import known_subjects
    from ssiuu.params import load_params

    def killed_stage(**_):
        raise StageFailed("prepare", -9, "Killed")

    monkeypatch.setattr(requests_flow, "pipeline", killed_stage)
    answered = {s for r in (project / "data" / "requests").glob("*.json")
                for s in json.loads(r.read_text())["subjects"]}
    subject = sorted(known_subjects(load_params(project / "params.yaml").data) - answered)[0]
    _drop(project, "req-0004.json", {"request_id": "req-0004", "received": "2026-11-26",
                                     "subjects": [subject]})
    state = requests_flow.answer_requests(root=str(project), return_state=True)
    assert state.is_failed()
    status = _status(project, "req-0004")
    assert [h["state"] for h in status["history"]] == ["received", "validated"]
    assert "interrupted in state 'validated': StageFailed" in status["reason"]
    assert "resumed by the next run" in status["reason"]
    assert (project / "data" / "requests" / "req-0004.json").is_file()
