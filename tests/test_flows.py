"""The pipeline flow and the deletion-request flow, for real: a temporary Prefect server, real
`dvc repro --single-item` runs of a reduced tiny profile in a temporary git repository,
MLflow's SQLite store.

One project serves the module, as it would in production. The request flow answers two
requests on it in one run; each answer runs the pipeline flow as a subflow (up to ``report``,
then ``register``), and the first is the project's first full run: the pipeline flow's own
tests read those subflow runs, then rerun, kill and misconfigure the pipeline flow."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from projects import dvc, flow_module, project_fixture, reduced_project

from ssiuu.workspace import isolated_env

REPO = Path(__file__).parents[1]
ALWAYS_CHANGED = {"check", "register"}
LAST_MODEL = "ssiuu-scratch-req-0001.req-0002.req-0003"  # after the two requests
# A test-only wrapper: SIGKILLs itself the first time (a marker file), then runs the command.
KILL_ONCE = """import os, signal, sys
from pathlib import Path

if not Path("killed-once").exists():
    Path("killed-once").touch()
    os.kill(os.getpid(), signal.SIGKILL)
os.execvp(sys.argv[1], sys.argv[1:])
"""

pytestmark = pytest.mark.e2e


pipeline_flow = flow_module("pipeline")
project = project_fixture("flows")


@pytest.fixture(scope="module")
def requests_flow(pipeline_flow) -> ModuleType:
    """``flows.deletion_requests``, under the pipeline flow's temporary Prefect home."""
    return importlib.import_module("flows.deletion_requests")


def _drop(root: Path, name: str, content: str | dict) -> Path:
    path = root / "data" / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _status(root: Path, request_id: str) -> dict:
    return json.loads((root / "data" / "request_status" / f"{request_id}.json").read_text())


def _status_of(root: Path, name: str) -> dict:
    """The status of the request dropped as file ``name`` (its key may be a content hash)."""
    found = [json.loads(p.read_text()) for p in (root / "data" / "request_status").glob("*.json")]
    found = [status for status in found if status["file"] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def _untouched(root: Path) -> dict[Path, bytes]:
    kept = [p for p in (root / "data" / "requests").rglob("*") if p.is_file()]
    return {p: p.read_bytes() for p in kept}


def _task_runs(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    by_name = {run.name: run for run in runs}
    assert len(by_name) == len(runs)  # one task run per stage
    return by_name


def _pipeline_runs(flow_run_id) -> list:
    """The pipeline flow's runs inside the flow run ``flow_run_id`` (its subflows), in the
    order they started."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
    return sorted(runs, key=lambda run: run.start_time)


def _artifact(key: str, flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(
                any_=[flow_run_id])))
    assert len(found) == 1, (key, found)
    return found[0]


def _upstream(repo: Path) -> dict[str, set[str]]:
    """Each stage's direct DVC dependencies, read from DVC itself (in ``repo``: DVC's names
    are relative to the current directory)."""
    from dvc.repo import Repo

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(repo)
        with Repo(str(repo)) as dvc_repo:
            upstream = {stage.addressing: set() for stage in dvc_repo.index.stages}
            for stage, dependency in dvc_repo.index.graph.edges:
                upstream[stage.addressing].add(dependency.addressing)
    return upstream


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def two_requests(requests_flow, project) -> tuple[tuple[str, str], list[dict], object]:
    """Requests req-0002 and req-0003 (one new subject each) dropped into the fresh project's
    inbox and answered in one run of the request flow: (their subjects, the run's result,
    its flow run id)."""
    from ssiuu.config.params import load_params
    from ssiuu.records.inbox import known_subjects

    requested = json.loads((project / "data" / "requests" / "req-0001.json").read_text())
    params = load_params(project / "params.yaml")
    first, second = sorted(known_subjects(params.data) - set(requested["subjects"]))[:2]
    for request_id, subject in (("req-0002", first), ("req-0003", second)):
        _drop(project, f"{request_id}.json", {"request_id": request_id, "subjects": [subject],
                                              "received": "2026-11-25",
                                              "requested_by": "dpo@example.org"})
    inbox = project / "data" / "inbox"  # hostile entries before them, by name
    (inbox / "h-folder.json").mkdir()
    (inbox / "h-dangling.json").symlink_to(project / "nowhere.json")
    os.mkfifo(inbox / "h-fifo.json")
    _drop(project, "req-0001.json", {"request_id": "req-0009", "subjects": [first],
                                     "received": "2026-11-25"})  # the name of a request there
    state = requests_flow.answer_requests(root=str(project), return_state=True)
    assert state.is_completed(), state.message
    return (first, second), state.result(), state.state_details.flow_run_id


def test_stage_order_follows_the_real_dvc_yaml(pipeline_flow, tmp_path):
    root = reduced_project(tmp_path / "repo")
    order = pipeline_flow.stage_order(root)
    upstream = _upstream(root)
    assert sorted(order) == sorted(upstream) and len(order) == len(set(order))
    assert order[0] == "check" and order[-1] == "register"
    for name in order:
        assert all(order.index(parent) < order.index(name) for parent in upstream[name]), name
    methods = yaml.safe_load((root / "params.yaml").read_text())["unlearn"]["methods"]
    for method in methods:
        assert order.index(f"unlearn@{method}") < order.index(f"evaluate_unlearned@{method}")
        assert order.index("attribute") < order.index(f"diagnose@{method}")
        assert order.index(f"unlearn@{method}") < order.index(f"relearn@{method}")
        assert order.index(f"relearn@{method}") < order.index("report")
    partial = pipeline_flow.stage_order(root, "unlearn@gd")
    assert partial[0] == "check" and partial[-1] == "unlearn@gd"
    assert {"prepare", "base", "evaluate@oracle"} <= set(partial)
    assert not {"evaluate@base", "unlearn@ga", "report", "register"} & set(partial)
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        pipeline_flow.stage_order(root, "nope")


def test_overrides_are_written_once_with_comments_kept(pipeline_flow, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    pipeline_flow.apply_overrides(params, ["unlearn.losses.ssiuu.lam=1e-2", "seeds=[0, 1]",
                                           "relearn.train.lora={r: 8, alpha: 16}"])
    text = params.read_text()
    assert "# Every knob of the pipeline." in text
    assert "# the stop's ladder: highest first" in text
    written = yaml.safe_load(text)
    assert written["unlearn"]["losses"]["ssiuu"]["lam"] == 0.01 and written["seeds"] == [0, 1]
    assert written["relearn"]["train"]["lora"] == {"r": 8, "alpha": 16}


@pytest.mark.parametrize("command", [["flows/deletion_requests.py"],
                                     ["-m", "flows.deletion_requests"]], ids=["path", "module"])
def test_the_request_flow_runs_by_its_path_and_as_a_module(command):
    done = subprocess.run([sys.executable, *command, "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--root" in done.stdout


def test_the_library_does_not_import_prefect():
    for path in (REPO / "src").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+prefect\b", path.read_text(), re.M), path


def test_the_registry_link_is_the_mlflow_ui_on_a_tracking_server(pipeline_flow, project,
                                                                 monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/")
    link = pipeline_flow._registry_link(project, {"model": "ssiuu-scratch-req-0001"})
    assert link == "http://127.0.0.1:5000/#/models/ssiuu-scratch-req-0001"


def test_bad_requests_are_rejected_with_the_reason_and_touch_nothing(requests_flow, project):
    before = _untouched(project)
    _drop(project, "a-broken.json", "{not json")
    _drop(project, "b-nobody.json", {"request_id": "req-0100", "received": "2026-11-25",
                                     "subjects": ["Nobody Anywhere"]})
    _drop(project, "c-reused.json", {"request_id": "req-0001", "received": "2026-11-25",
                                     "subjects": ["Nobody Anywhere"]})
    results = requests_flow.answer_requests(root=str(project))
    assert [r["state"] for r in results] == ["rejected"] * 3
    assert "not valid JSON" in _status_of(project, "a-broken.json")["reason"]
    unknown = _status(project, "req-0100")
    assert "subjects[0]: not a data subject" in unknown["reason"]
    assert "Nobody" not in unknown["reason"]  # a reason names fields, never the person
    assert [h["state"] for h in unknown["history"]] == ["received", "rejected"]
    reused = _status_of(project, "c-reused.json")
    assert "already used" in reused["reason"] and reused["request_id"] == "req-0001"
    assert not (project / "data" / "request_status" / "req-0001.json").exists()
    assert sorted(p.name.split("--")[-1] for p in
                  (project / "data" / "inbox" / "rejected").iterdir()) == [
        "a-broken.json", "b-nobody.json", "c-reused.json"]
    assert _untouched(project) == before
    assert not (project / "models").exists() and not (project / "mlflow.db").exists()


def test_two_requests_in_one_run_are_answered_in_turn_each_with_its_record(requests_flow,
                                                                           project,
                                                                           two_requests):
    from mlflow import MlflowClient

    (first, second), results, _ = two_requests
    hostile = results[:4]
    assert [(r["request_id"], r["state"]) for r in hostile] == [
        (None, "rejected"), (None, "rejected"), (None, "rejected"), ("req-0009", "rejected")]
    for name, reason in (("h-dangling.json", "a symbolic link"),
                         ("h-fifo.json", "not a regular file (a FIFO)"),
                         ("h-folder.json", "not a regular file (a directory)"),
                         ("req-0001.json", "file name already taken")):
        assert reason in _status_of(project, name)["reason"]
    assert results[4:] == [{"request_id": f"req-000{n}", "state": "registered",
                            "reason": None, "versions": 1} for n in (2, 3)]
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for request_id, model, requests in (
            ("req-0002", "ssiuu-scratch-req-0001.req-0002", "req-0001,req-0002"),
            ("req-0003", LAST_MODEL, "req-0001,req-0002,req-0003")):
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
    assert len(client.search_model_versions(f"name='{LAST_MODEL}'")) == 1


def test_every_stage_is_one_completed_task_run_after_its_upstream_stages(pipeline_flow,
                                                                         project,
                                                                         two_requests):
    runs = _pipeline_runs(two_requests[2])
    assert [run.parameters["target"] for run in runs] == ["report", "register"] * 2
    upstream = _upstream(project)
    for run in runs:
        assert run.state_type.value == "COMPLETED", run.parameters
        tasks = _task_runs(run.id)
        assert set(tasks) == set(pipeline_flow.stage_order(project, run.parameters["target"]))
        for name, task_run in tasks.items():
            assert task_run.state_type.value == "COMPLETED" and task_run.run_count == 1, name
            for parent in upstream[name]:
                assert tasks[parent].end_time <= task_run.start_time, (parent, name)
    assert set(_task_runs(runs[1].id)) == set(upstream)  # `register` needs every stage
    status = dvc(project, "status", "--json")
    assert json.loads(status.stdout) == {name: ["always changed"] for name in ALWAYS_CHANGED}


def test_the_report_and_the_registered_versions_are_artifacts(project, two_requests):
    last = _pipeline_runs(two_requests[2])[-1]
    report = _artifact("robustness-summary", last.id)
    assert report.type == "markdown"
    assert report.data == (project / "reports" / "robustness.md").read_text()
    table = re.search(r"^\| model \| forget acc \| forget MCQ \|.*$", report.data, re.M)
    assert table, report.data[:2000]
    rows = report.data[table.end():].strip("\n").split("\n\n")[0].splitlines()[1:]
    assert [row.split("|")[1].strip().rstrip(" †") for row in rows] == ["base", "oracle", "gd"]
    link = _artifact("registered-versions", last.id)
    uri = (project / "metrics" / "registry.json").resolve().as_uri()
    assert link.data == f"[{LAST_MODEL}: 1 version(s)]({uri})"


def test_a_second_run_finds_every_stage_up_to_date(pipeline_flow, project, two_requests):
    models = _files(project / "models")
    state = pipeline_flow.pipeline(root=str(project), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert {name for name, how in result["stages"].items() if how == "ran"} == ALWAYS_CHANGED
    assert set(result["stages"]) == set(_upstream(project))
    assert _files(project / "models") == models  # nothing trained, nothing rewritten
    assert result["registry"]["model"] == LAST_MODEL and result["registry"]["added"] == 0


def test_a_killed_stage_is_retried_and_the_run_completes(pipeline_flow, project, two_requests):
    (project / "kill_once.py").write_text(KILL_ONCE)
    dvc_yaml = project / "dvc.yaml"
    original = dvc_yaml.read_text()
    wrapped = original.replace("cmd: python stages/spurious.py",
                               "cmd: python kill_once.py python stages/spurious.py")
    assert wrapped != original
    dvc_yaml.write_text(wrapped)
    try:
        state = pipeline_flow.pipeline(root=str(project), target="spurious", return_state=True)
    finally:
        dvc_yaml.write_text(original)
    assert (project / "killed-once").is_file()
    assert state.is_completed(), state.message
    stages = state.result()["stages"]
    assert list(stages) == pipeline_flow.stage_order(project, "spurious")
    assert stages["spurious"] == "ran" and "report" not in stages
    run = _task_runs(state.state_details.flow_run_id)["spurious"]
    assert run.state_type.value == "COMPLETED" and run.run_count == 2


def test_a_bad_param_fails_its_check_once_and_names_the_param(pipeline_flow, project,
                                                              two_requests):
    params = project / "params.yaml"
    original = params.read_text()
    try:
        state = pipeline_flow.pipeline(overrides=["seeds=banana"], root=str(project),
                                       return_state=True)
        written = yaml.safe_load(params.read_text())
    finally:
        params.write_text(original)
    assert written["seeds"] == "banana"
    assert state.is_failed()
    with pytest.raises(pipeline_flow.StageFailed, match=r"params\.yaml: seeds") as failed:
        state.result()
    assert failed.value.returncode == 2 and not failed.value.killed
    runs = _task_runs(state.state_details.flow_run_id)
    assert runs["check"].state_type.value == "FAILED" and runs["check"].run_count == 1
    assert all(run.state_type.value != "COMPLETED" for run in runs.values())


def test_an_unknown_override_key_fails_before_anything_runs(pipeline_flow, project):
    from ssiuu.config.errors import ParamsError

    params = project / "params.yaml"
    original = params.read_text()
    state = pipeline_flow.pipeline(overrides=["seeds=[0]", "unlearn.losses.gd.alfa=1"],
                                   root=str(project), return_state=True)
    assert state.is_failed()
    with pytest.raises(ParamsError, match=r"unlearn\.losses\.gd\.alfa: unknown parameter"):
        state.result()
    assert params.read_text() == original
    assert _task_runs(state.state_details.flow_run_id) == {}


def test_an_interrupted_answer_is_resumed_and_registers_nothing_twice(requests_flow,
                                                                     project, two_requests):
    from mlflow import MlflowClient

    path = project / "data" / "request_status" / "req-0003.json"
    status = json.loads(path.read_text())
    assert status["history"][-1]["state"] == "registered"
    status.update(history=status["history"][:3], versions=[], gate=None, certificate=None)
    path.write_text(json.dumps(status))  # as if the process died before `register` ended
    state = requests_flow.answer_requests(root=str(project), return_state=True)
    assert state.result() == [{"request_id": "req-0003", "state": "registered",
                               "reason": None, "versions": 1}]
    resumed_runs = _pipeline_runs(state.state_details.flow_run_id)
    assert [run.parameters["target"] for run in resumed_runs] == ["register"]  # unlearned
    resumed = _status(project, "req-0003")
    assert [h["state"] for h in resumed["history"]] == [
        "received", "validated", "unlearned", "registered"]
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert len(client.search_model_versions(f"name='{LAST_MODEL}'")) == 1
    assert requests_flow.answer_requests(root=str(project)) == []


def test_two_flow_runs_started_together_answer_a_request_once(project, two_requests,
                                                              tmp_path):
    """Two runs of the inbox flow, each its own process and Prefect home, started together
    on one new request: one answers it, the other waits for the inbox lock and then finds
    nothing to do; one new version, one status history."""
    from mlflow import MlflowClient

    from ssiuu.config.params import load_params
    from ssiuu.records.inbox import known_subjects

    answered = {s for r in (project / "data" / "requests").glob("*.json")
                for s in json.loads(r.read_text())["subjects"]}
    subject = sorted(known_subjects(load_params(project / "params.yaml").data) - answered)[0]
    _drop(project, "req-0005.json", {"request_id": "req-0005", "received": "2026-11-26",
                                     "subjects": [subject]})
    runs = [subprocess.Popen([sys.executable, "flows/deletion_requests.py", "--root", "."],
                             cwd=project, env=isolated_env(tmp_path / f"prefect-{n}"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for n in range(2)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [out[-3000:] for out in outputs]
    answers = sorted(line for out in outputs for line in out.splitlines()
                     if line.startswith("{'request_id'"))
    assert answers == ["{'request_id': 'req-0005', 'state': 'registered', 'reason': None, "
                       "'versions': 1}"]
    status = _status(project, "req-0005")
    assert [h["state"] for h in status["history"]] == [
        "received", "validated", "unlearned", "registered"]
    model = status["versions"][0]["model"]
    assert model.startswith("ssiuu-scratch-4-requests-")  # four ids: their count and a hash
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    assert len(client.search_model_versions(f"name='{model}'")) == 1


def test_a_request_that_cannot_be_resumed_keeps_its_reason_and_blocks_no_new_entry(
        requests_flow, project):
    from ssiuu.records.inbox import RequestStatus, write_status

    status_dir = project / "data" / "request_status"
    lost = RequestStatus("req-0006", "req-0006.json", "req-0006", "0" * 64)
    path = write_status(lost.enter("received").enter("validated"), status_dir)
    _drop(project, "y-broken.json", "{not json")
    try:
        state = requests_flow.answer_requests(root=str(project), return_state=True)
        assert state.is_failed() and "req-0006 cannot be resumed" in state.message
        assert "in neither" in _status(project, "req-0006")["reason"]
        assert "not valid JSON" in _status_of(project, "y-broken.json")["reason"]
        assert not (project / "data" / "inbox" / "y-broken.json").exists()
    finally:
        path.unlink()


def test_a_failed_pipeline_leaves_the_request_validated_with_the_reason(requests_flow,
                                                                       project, monkeypatch):
    from flows.pipeline import StageFailed
    from ssiuu.config.params import load_params
    from ssiuu.records.inbox import known_subjects

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
