"""The Prefect flow over the DVC pipeline: a real temporary Prefect server and real
`dvc repro --single-item` runs of a reduced tiny profile in a temporary git repository."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from projects import flow_module, project_fixture, reduced_project

REPO = Path(__file__).parents[1]
ALWAYS_CHANGED = {"check", "register"}
# A test-only wrapper: SIGKILLs itself the first time (a marker file), then runs the command.
KILL_ONCE = """import os, signal, sys
from pathlib import Path

if not Path("killed-once").exists():
    Path("killed-once").touch()
    os.kill(os.getpid(), signal.SIGKILL)
os.execvp(sys.argv[1], sys.argv[1:])
"""

pytestmark = pytest.mark.e2e


flows = flow_module("pipeline")
repo = project_fixture("flow")


@pytest.fixture(scope="module")
def first_run(flows, repo):
    """The flow's first run on the fresh repository: its result and flow run id."""
    state = flows.pipeline(root=str(repo), return_state=True)
    assert state.is_completed(), state.message
    return state.result(), state.state_details.flow_run_id


def _task_runs(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    by_name = {run.name: run for run in runs}
    assert len(by_name) == len(runs)  # one task run per stage
    return by_name


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


def test_stage_order_follows_the_real_dvc_yaml(flows, tmp_path):
    root = reduced_project(tmp_path / "repo")
    order = flows.stage_order(root)
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
    partial = flows.stage_order(root, "unlearn@gd")
    assert partial[0] == "check" and partial[-1] == "unlearn@gd"
    assert {"prepare", "base", "evaluate@oracle"} <= set(partial)
    assert not {"evaluate@base", "unlearn@ga", "report", "register"} & set(partial)
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        flows.stage_order(root, "nope")


def test_every_stage_is_one_completed_task_run_after_its_upstream_stages(repo, first_run):
    result, flow_run_id = first_run
    upstream = _upstream(repo)
    runs = _task_runs(flow_run_id)
    assert set(runs) == set(upstream) == set(result["stages"])
    assert set(result["stages"].values()) == {"ran"}
    for name, run in runs.items():
        assert run.state_type.value == "COMPLETED" and run.run_count == 1, name
        for parent in upstream[name]:
            assert runs[parent].end_time <= run.start_time, (parent, name)
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=repo,
                            capture_output=True, text=True, check=True)
    assert json.loads(status.stdout) == {name: ["always changed"] for name in ALWAYS_CHANGED}
    assert result["registry"]["model"] == "ssiuu-scratch-req-0001"
    assert result["registry"]["added"] == 1


def test_the_report_and_the_registered_versions_are_artifacts(repo, first_run):
    _, flow_run_id = first_run
    report = _artifact("robustness-summary", flow_run_id)
    assert report.type == "markdown"
    assert report.data == (repo / "reports" / "robustness.md").read_text()
    table = re.search(r"^\| model \| forget acc \| forget MCQ \|.*$", report.data, re.M)
    assert table, report.data[:2000]
    rows = report.data[table.end():].strip("\n").split("\n\n")[0].splitlines()[1:]
    assert [row.split("|")[1].strip().rstrip(" †") for row in rows] == ["base", "oracle", "gd"]
    link = _artifact("registered-versions", flow_run_id)
    uri = (repo / "metrics" / "registry.json").resolve().as_uri()
    assert link.data == f"[ssiuu-scratch-req-0001: 1 version(s)]({uri})"


def test_the_registry_link_is_the_mlflow_ui_on_a_tracking_server(flows, repo, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/")
    link = flows._registry_link(repo, {"model": "ssiuu-scratch-req-0001"})
    assert link == "http://127.0.0.1:5000/#/models/ssiuu-scratch-req-0001"


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_a_second_run_finds_every_stage_up_to_date(flows, repo, first_run):
    models = _files(repo / "models")
    state = flows.pipeline(root=str(repo), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert {name for name, how in result["stages"].items() if how == "ran"} == ALWAYS_CHANGED
    assert set(result["stages"]) == set(first_run[0]["stages"])
    assert _files(repo / "models") == models  # nothing trained, nothing rewritten
    assert result["registry"]["added"] == 0


def test_a_killed_stage_is_retried_and_the_run_completes(flows, repo, first_run):
    (repo / "kill_once.py").write_text(KILL_ONCE)
    dvc_yaml = repo / "dvc.yaml"
    original = dvc_yaml.read_text()
    wrapped = original.replace("cmd: python stages/spurious.py",
                               "cmd: python kill_once.py python stages/spurious.py")
    assert wrapped != original
    dvc_yaml.write_text(wrapped)
    try:
        state = flows.pipeline(root=str(repo), target="spurious", return_state=True)
    finally:
        dvc_yaml.write_text(original)
    assert (repo / "killed-once").is_file()
    assert state.is_completed(), state.message
    stages = state.result()["stages"]
    assert list(stages) == flows.stage_order(repo, "spurious")
    assert stages["spurious"] == "ran" and "report" not in stages
    run = _task_runs(state.state_details.flow_run_id)["spurious"]
    assert run.state_type.value == "COMPLETED" and run.run_count == 2


def test_a_bad_param_fails_its_check_once_and_names_the_param(flows, repo, first_run):
    params = repo / "params.yaml"
    original = params.read_text()
    try:
        state = flows.pipeline(overrides=["seeds=banana"], root=str(repo), return_state=True)
        written = yaml.safe_load(params.read_text())
    finally:
        params.write_text(original)
    assert written["seeds"] == "banana"
    assert state.is_failed()
    with pytest.raises(flows.StageFailed, match=r"params\.yaml: seeds") as failed:
        state.result()
    assert failed.value.returncode == 2 and not failed.value.killed
    runs = _task_runs(state.state_details.flow_run_id)
    assert runs["check"].state_type.value == "FAILED" and runs["check"].run_count == 1
    assert all(run.state_type.value != "COMPLETED" for run in runs.values())


def test_an_unknown_override_key_fails_before_anything_runs(flows, repo, first_run):
    from ssiuu.errors import ParamsError

    params = repo / "params.yaml"
    original = params.read_text()
    state = flows.pipeline(overrides=["seeds=[0]", "unlearn.losses.gd.alfa=1"],
                           root=str(repo), return_state=True)
    assert state.is_failed()
    with pytest.raises(ParamsError, match=r"unlearn\.losses\.gd\.alfa: unknown parameter"):
        state.result()
    assert params.read_text() == original
    assert _task_runs(state.state_details.flow_run_id) == {}


def test_overrides_are_written_once_with_comments_kept(flows, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    flows.apply_overrides(params, ["unlearn.losses.ssiuu.lam=1e-2", "seeds=[0, 1]",
                                   "relearn.train.lora={r: 8, alpha: 16}"])
    text = params.read_text()
    assert "# Every knob of the pipeline." in text
    assert "# tried lowest first" in text
    written = yaml.safe_load(text)
    assert written["unlearn"]["losses"]["ssiuu"]["lam"] == 0.01 and written["seeds"] == [0, 1]
    assert written["relearn"]["train"]["lora"] == {"r": 8, "alpha": 16}


def test_the_library_does_not_import_prefect():
    for path in (REPO / "src").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+prefect\b", path.read_text(), re.M), path
