"""The Prefect deployments of ``prefect.yaml``: the file itself, and a real local Prefect
server and process worker that deploy it and run the ``pipeline`` deployment's check stage
in a temporary git repository of the project."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import psutil
import pytest
import yaml
from projects import reduced_project

from ssiuu.workspace import free_port, isolated_env

REPO = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
POOL = "ssiuu-local"
NIGHTLY_CRON = "0 2 * * *"
# Each deployment's entrypoint and the name of the flow it loads.
FLOWS = {"nightly-deletion-requests": ("flows/deletion_requests.py:answer_requests",
                                       "deletion-requests"),
         "pipeline": ("flows/pipeline.py:pipeline", "ssiuu-pipeline")}
# Run in a fresh interpreter, as a worker's flow run loads its flow: Prefect registers a
# script under its file's name and puts its folder first on sys.path, which this test
# process must not inherit.
LOAD_FLOWS = """import json, sys
from prefect.flows import load_flow_from_entrypoint

print(json.dumps({entrypoint: load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False).name
                  for entrypoint in sys.argv[1:]}))
"""

pytestmark = pytest.mark.e2e

T = TypeVar("T")


def _timezone() -> str:
    """``flows.timezone`` of the project's ``params.yaml``: the nightly schedule's."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    return params["flows"]["timezone"]


def test_prefect_yaml_declares_both_deployments_on_the_local_pool():
    project = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    assert project["name"] == "ssiuu"
    assert not project.get("build") and not project.get("push")
    assert project["pull"] == [{"prefect.deployments.steps.set_working_directory": {
        "directory": "{{ $PWD }}"}}]
    deployments = {deployment["name"]: deployment for deployment in project["deployments"]}
    assert set(deployments) == set(FLOWS)
    for name, (entrypoint, _) in FLOWS.items():
        assert deployments[name]["entrypoint"] == entrypoint
        assert deployments[name]["work_pool"]["name"] == POOL
        assert not deployments[name].get("parameters")
        assert deployments[name]["concurrency_limit"] == {"limit": 1,
                                                          "collision_strategy": "ENQUEUE"}
    nightly, pipeline = deployments["nightly-deletion-requests"], deployments["pipeline"]
    assert [(s["cron"], s["timezone"], s.get("active", True)) for s in nightly["schedules"]] \
        == [(NIGHTLY_CRON, _timezone(), True)]
    assert not pipeline.get("schedules") and not pipeline.get("schedule")


def test_each_entrypoint_loads_the_flow_its_deployment_names():
    entrypoints = [entrypoint for entrypoint, _ in FLOWS.values()]
    done = subprocess.run([sys.executable, "-c", LOAD_FLOWS, *entrypoints], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == dict(FLOWS.values())


def _run(cwd: Path, env: dict[str, str], *args: str) -> str:
    """Run ``args`` in ``cwd``; its standard output, or a failure showing its output."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _stop(process: subprocess.Popen, signum: int, timeout: float = 120) -> None:
    """Send ``signum`` to ``process``'s process group and wait up to ``timeout`` s for it;
    then SIGKILL what is left of the group and of the process's descendants (a flow run's
    processes have process groups of their own)."""
    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        descendants = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@contextlib.contextmanager
def _running(args: list[str], cwd: Path, env: dict[str, str], log: Path,
             stop_signal: int) -> Iterator[subprocess.Popen]:
    """``args`` running in a process group of its own, its output in ``log``; stopped with
    ``stop_signal`` (see :func:`_stop`) on the way out."""
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        _stop(process, stop_signal)


def _wait_for(probe: Callable[[], T | None], timeout: float, what: str,
              log: Path, process: subprocess.Popen) -> T:
    """Poll ``probe`` until it returns something other than ``None``; fail after ``timeout``
    seconds or as soon as ``process`` exits, showing the end of its ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = probe()
        if found is not None:
            return found
        time.sleep(1)
    state = "timed out" if process.poll() is None else f"exit {process.returncode}"
    pytest.fail(f"{what}: {state}; {log.name}:\n{log.read_text(encoding='utf-8')[-4000:]}")


def _healthy(api_url: str) -> bool | None:
    """``True`` once the server at ``api_url`` answers its health check, else ``None``."""
    import httpx

    try:
        response = httpx.get(f"{api_url}/health", timeout=2)
    except httpx.HTTPError:
        return None
    return True if response.status_code == 200 else None


@pytest.fixture()
def project(tmp_path) -> Path:
    """The pipeline (``prefect.yaml`` with it) with the reduced tiny profile, in a fresh git
    repository."""
    return reduced_project(tmp_path / "repo")


def test_a_local_worker_runs_the_pipeline_deployment(project, tmp_path):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.objects import FlowRun

    port = str(free_port())
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**isolated_env(tmp_path / "prefect-home"), "PREFECT_API_URL": api_url}
    prefect = str(BIN / "prefect")
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    with _running([prefect, "server", "start", "--host", "127.0.0.1", "--port", port, "--no-ui"],
                  tmp_path, env, server_log, signal.SIGTERM) as server:
        _wait_for(lambda: _healthy(api_url), 90, "server start", server_log, server)
        _run(project, env, prefect, "work-pool", "create", POOL, "--type", "process")
        # `prefect deploy` fills in the pull step's {{ $PWD }}: the shell's directory.
        _run(project, {**env, "PWD": str(project)}, prefect, "--no-prompt", "deploy", "--all")
        _run(project, env, prefect, "deployment", "run", "ssiuu-pipeline/pipeline",
             "--param", "target=check")
        # A worker that polls once, runs what is due and stops by itself once its run has
        # finished (Prefect 3.8's worker does not always exit on SIGINT: an operator's
        # second Ctrl-C kills it). Started elsewhere: the deployment's pull step, not the
        # worker, picks the project.
        worker = subprocess.run([prefect, "worker", "start", "--pool", POOL, "--run-once",
                                 "--limit", "1"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300)
        worker_log.write_text(worker.stdout + worker.stderr, encoding="utf-8")
        assert worker.returncode == 0, worker_log.read_text(encoding="utf-8")[-4000:]
        assert "stopped!" in worker.stdout
        with SyncPrefectClient(api_url) as client:
            pipeline = client.read_deployment_by_name("ssiuu-pipeline/pipeline")
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[pipeline.id])))
            assert len(runs) == 1 and runs[0].parameters == {"target": "check"}
            run = client.read_flow_run(runs[0].id)
            assert run.state.is_completed(), f"{run.state}\n{worker_log.read_text()[-4000:]}"
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
                any_=[run.id])))
            assert any("> python stages/check.py" in log.message for log in logs)
            nightly = client.read_deployment_by_name("deletion-requests/nightly-deletion-requests")

            def scheduled() -> list[FlowRun] | None:
                return client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[nightly.id]))) or None

            nightly_runs = _wait_for(scheduled, 60, "the nightly runs", server_log, server)
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    assert set(lock["stages"]) == {"check"}  # the run's stage ran in the project
    assert pipeline.pull_steps == [{"prefect.deployments.steps.set_working_directory": {
        "directory": str(project)}}]
    assert pipeline.work_pool_name == POOL and pipeline.schedules == []
    assert pipeline.entrypoint == FLOWS["pipeline"][0]
    assert nightly.work_pool_name == POOL
    for deployment in (pipeline, nightly):  # one run at a time, the next enqueued
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
    assert nightly.entrypoint == FLOWS["nightly-deletion-requests"][0]
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in nightly.schedules] \
        == [(NIGHTLY_CRON, _timezone(), True)]
    zone = ZoneInfo(_timezone())
    starts: list[datetime] = [later.expected_start_time.astimezone(zone) for later in nightly_runs]
    assert all((start.hour, start.minute) == (2, 0) for start in starts), starts
    assert {later.state_type.value for later in nightly_runs} == {"SCHEDULED"}
