"""The sweep flow: a 2-point grid as two DVC experiments run side by side on a local Dask
cluster (``dvc exp run --temp``), on a reduced tiny project in a temporary git repository,
with a real temporary Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from projects import dvc, flow_module, git, project_fixture

pytestmark = pytest.mark.e2e
ALPHA = "unlearn.losses.gd.alpha"
TARGET = "evaluate_unlearned@gd"  # the run stops there: no relearning attacks, no report
UNLEARNED = "metrics/unlearned/gd.json"


flows = flow_module("sweep")
repo = project_fixture("sweep")


@pytest.fixture(scope="module")
def baseline(repo):
    """The stages every point shares (data, base, oracle and its scores), reproduced once and
    committed, as a sweep starts from a reproduced project: each point reruns only what its
    params change (`unlearn@gd` onwards) and restores the rest from DVC's cache."""
    dvc(repo, "repro", "base", "evaluate@oracle")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline")
    return repo


@pytest.fixture(scope="module")
def dask_sweep(flows, baseline):
    """The 2-point sweep through Dask with 2 workers: its rows and flow run id."""
    state = flows.sweep(grid={ALPHA: [1.0, 3.0]}, root=str(baseline), engine="dask", workers=2,
                        target=TARGET, metrics_files=[UNLEARNED], name_prefix="alpha",
                        return_state=True)
    assert state.is_completed(), state.message
    return state.result(), state.state_details.flow_run_id


def test_the_grid_is_the_cartesian_product_as_dvc_set_params(flows):
    grid = {"seeds": [[0], [1]], ALPHA: [1.0, 3.0]}
    assert flows.points(grid) == [{"seeds": [0], ALPHA: 1.0}, {"seeds": [0], ALPHA: 3.0},
                                  {"seeds": [1], ALPHA: 1.0}, {"seeds": [1], ALPHA: 3.0}]
    assert flows.set_params({"seeds": [0, 1], ALPHA: 1.0}) == [
        "-S", "seeds=[0, 1]", "-S", f"{ALPHA}=1.0"]
    assert flows._grid_arg("seeds=[0],[1]") == ("seeds", [[0], [1]])
    with pytest.raises(ValueError, match="at least one value"):
        flows.points({ALPHA: []})


def test_experiments_side_by_side_share_the_cores(flows):
    assert flows.share_cores({ALPHA: 1.0}, workers=2, cores=2) == {
        ALPHA: 1.0, "runtime.num_threads": 1}
    assert flows.share_cores({ALPHA: 1.0}, workers=2, cores=16)["runtime.num_threads"] == 8
    assert flows.share_cores({ALPHA: 1.0}, workers=4, cores=2)["runtime.num_threads"] == 1
    assert flows.share_cores({"runtime.num_threads": 3}, workers=2, cores=2) == {
        "runtime.num_threads": 3}


def test_each_point_is_a_dvc_experiment_with_its_params(repo, dask_sweep):
    shown = dvc(repo, "exp", "show", "--json")
    exps = {state["name"]: state["data"]["params"]["params.yaml"]["data"]
            for baseline in json.loads(shown.stdout)
            for exp_range in baseline.get("experiments") or []
            for state in exp_range["revs"]}
    assert {"alpha-0", "alpha-1"} <= set(exps)
    assert exps["alpha-0"]["unlearn"]["losses"]["gd"]["alpha"] == 1.0
    assert exps["alpha-1"]["unlearn"]["losses"]["gd"]["alpha"] == 3.0
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert {exps[name]["runtime"]["num_threads"] for name in ("alpha-0", "alpha-1")} == {threads}
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                            text=True, check=True)
    assert status.stdout == ""  # temp experiments leave the workspace alone


def test_each_point_is_a_completed_task_run_on_the_flows_server(dask_sweep):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(any_=["alpha-0", "alpha-1"])))
    assert sorted(run.name for run in runs) == ["alpha-0", "alpha-1"]
    assert all(run.state_type.value == "COMPLETED" for run in runs)


def test_the_results_table_is_returned_and_published(flows, dask_sweep):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    rows, flow_run_id = dask_sweep
    assert [(row["experiment"], row[ALPHA]) for row in rows] == [("alpha-0", 1.0),
                                                                 ("alpha-1", 3.0)]
    for row in rows:
        assert 0.0 <= row[f"{UNLEARNED}:mean.forget_acc"] <= 1.0, row
        assert 0.0 <= row[f"{UNLEARNED}:mean.retain_acc"] <= 1.0, row
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["sweep-results"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    assert len(found) == 1 and found[0].type == "table"
    assert json.loads(found[0].data) == rows


def test_dvc_s_queue_runs_the_same_grid_to_the_same_scores(flows, repo, dask_sweep):
    try:
        queued = flows.sweep(grid={ALPHA: [1.0, 3.0]}, root=str(repo), engine="queue",
                             workers=2, target=TARGET, metrics_files=[UNLEARNED],
                             name_prefix="queued")
    finally:
        subprocess.run([sys.executable, "-m", "dvc", "queue", "stop"], cwd=repo,
                       capture_output=True)
    dask_rows, _ = dask_sweep
    assert [(row["experiment"], row[ALPHA]) for row in queued] == [("queued-0", 1.0),
                                                                   ("queued-1", 3.0)]
    done = dvc(repo, "queue", "status").stdout
    assert all(name in done for name in ("queued-0", "queued-1")) and "Failed" not in done
    for by_queue, by_dask in zip(queued, dask_rows, strict=True):
        scores = [key for key in by_dask if key.startswith(UNLEARNED)]
        assert scores and {k: by_queue[k] for k in scores} == {k: by_dask[k] for k in scores}
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                            text=True, check=True)
    assert status.stdout == ""  # queued experiments run outside the workspace too
