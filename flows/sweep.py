"""A parameter sweep as separate DVC experiments, run side by side by DVC's queue or by Dask.

Each point of the Cartesian ``grid`` is one DVC experiment (``dvc exp run -S key=value ...
-n NAME``), so DVC records its params, metrics and outputs as it would for a hand-run
experiment; the sweep only decides where and how many run at once:

- ``engine="dask"``: one Prefect task per point, submitted through a
  ``prefect_dask.DaskTaskRunner`` (a ``distributed.LocalCluster`` of ``workers`` processes, or
  the Dask scheduler at ``scheduler``, whose workers may be other machines holding the same
  project at the same path); each task runs ``dvc exp run --temp``, a temporary copy of the
  repository, so experiments run side by side without touching the workspace.
- ``engine="queue"``: DVC's own experiment queue: ``dvc exp run --queue`` per point, then
  ``dvc queue start --jobs workers``, and the flow waits until DVC reports every point done.

The results (name, the grid's params, the metrics DVC reports) are read back with
``dvc exp show --json`` and published as the Prefect table artifact ``sweep-results``.

Run it from the project root::

    python flows/sweep.py -g unlearn.losses.gd.alpha=1.0,3.0 --engine dask --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.futures import wait
from prefect_dask import DaskTaskRunner

PARAMS_FILE = "params.yaml"
POLL_SECONDS = 5.0  # between two looks at DVC's queue
_TAIL_LINES = 20  # lines of a failed experiment's output kept in its error
_DONE = {"Success", "Failed"}  # `dvc queue status` states of a finished task


class ExperimentFailed(RuntimeError):
    """A ``dvc exp run`` of one point of the sweep exited non-zero."""

    def __init__(self, name: str, returncode: int, output: str) -> None:
        super().__init__(name, returncode, output)
        self.name, self.returncode, self.output = name, returncode, output

    def __str__(self) -> str:
        return f"experiment '{self.name}' failed (exit {self.returncode}):\n{self.output}"


def points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of ``grid`` (``{key: [values]}``), one ``{key: value}`` each,
    in the grid's key order, the last key varying fastest."""
    if not grid or any(not values for values in grid.values()):
        raise ValueError(f"every key of the grid needs at least one value: {grid!r}")
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def set_params(point: dict[str, Any]) -> list[str]:
    """``dvc exp run`` arguments setting ``point``: ``["-S", "key=value", ...]``, each value
    as JSON (which DVC reads as YAML, as ``-S`` does)."""
    return [arg for key, value in point.items() for arg in ("-S", f"{key}={json.dumps(value)}")]


def share_cores(point: dict[str, Any], workers: int, cores: int | None = None) -> dict[str, Any]:
    """``point`` with ``runtime.num_threads`` set so that ``workers`` experiments side by side
    use at most this machine's ``cores`` (at least one thread each), unless the point sets
    it itself: torch's default of every core per process oversubscribes the machine and
    runs several times slower than one process alone. The threads change no result."""
    if "runtime.num_threads" in point:
        return point
    return {**point, "runtime.num_threads": max(1, (cores or os.cpu_count() or 1) // workers)}


def _dvc(*args: str) -> list[str]:
    """The command line of ``dvc ARGS`` with this interpreter's DVC."""
    return [sys.executable, "-m", "dvc", *args]


def _env() -> dict[str, str]:
    """The environment of a DVC command: this venv's tools first on PATH, unbuffered output."""
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _check(command: list[str], root: Path) -> str:
    """Run ``command`` in ``root``; its standard output, or :class:`RuntimeError` with its
    output on a non-zero exit."""
    done = subprocess.run(command, cwd=root, env=_env(), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[2:])} failed (exit {done.returncode}):\n"
                           f"{done.stdout}{done.stderr}")
    return done.stdout


@task(task_run_name="{name}", cache_policy=NO_CACHE)
def run_temp_experiment(name: str, root: str, point: dict[str, Any],
                        target: str | None) -> str:
    """Run ``dvc exp run --temp -S ... -n name [target]`` in ``root``, its output line by line
    into the task's log; return ``name``. Raises :class:`ExperimentFailed` on a non-zero exit.
    """
    logger = get_run_logger()
    command = _dvc("--wait-for-lock", "exp", "run", "--temp", *set_params(point), "-n", name,
                   *([target] if target else []))
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(command, cwd=root, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip().rpartition("\r")[2]
            if line:
                logger.info(line)
                tail.append(line)
    if process.returncode:
        raise ExperimentFailed(name, process.returncode, "\n".join(tail))
    return name


def _dask_runner(workers: int, scheduler: str | None) -> DaskTaskRunner:
    """A Dask task runner: the scheduler at ``scheduler`` (its workers find the Prefect API
    in their own ``PREFECT_API_URL``), else a local cluster of ``workers`` single-threaded
    worker processes given this flow's API, so their task runs land on the flow's server
    even when it is Prefect's temporary one (without it each worker starts its own)."""
    if scheduler:
        return DaskTaskRunner(address=scheduler)
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                          "processes": True,
                                          "env": {"PREFECT_API_URL": api_url}})


@flow(name="ssiuu-sweep-dask")
def dask_experiments(names: list[str], root: str, grid_points: list[dict[str, Any]],
                     target: str | None) -> list[str]:
    """One :func:`run_temp_experiment` task per point, through the flow's Dask task runner
    (set with ``with_options``); the names of the experiments that succeeded, in order.
    A failed point fails its task and this flow, after every other point has finished."""
    futures = [run_temp_experiment.submit(name, root, point, target)
               for name, point in zip(names, grid_points, strict=True)]
    wait(futures)
    return [future.result() for future in futures]


def queue_experiments(names: list[str], root: Path, grid_points: list[dict[str, Any]],
                      target: str | None, workers: int) -> dict[str, str]:
    """Queue one ``dvc exp run --queue`` per point, start ``workers`` DVC queue workers and
    wait until DVC reports every point done; ``{name: "Success" | "Failed"}``."""
    from dvc.repo import Repo

    logger = get_run_logger()
    for name, point in zip(names, grid_points, strict=True):
        _check(_dvc("exp", "run", "--queue", *set_params(point), "-n", name,
                    *([target] if target else [])), root)
    log = root / ".dvc" / "tmp" / "queue-start.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        # Not waited on: `dvc queue start` stays until its last worker exits, and a Celery
        # worker whose idle monitor shut down while it still ran a task never exits.
        starter = subprocess.Popen(_dvc("queue", "start", "--jobs", str(workers)), cwd=root,
                                   env=_env(), stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        while True:
            if starter.poll():
                raise RuntimeError(f"queue start failed (exit {starter.returncode}):\n"
                                   f"{log.read_text()}")
            with Repo(str(root)) as repo:
                states = {entry["name"]: entry["status"]
                          for entry in repo.experiments.celery_queue.status()
                          if entry["name"] in names}
            pending = sorted(name for name in names if states.get(name) not in _DONE)
            if not pending:
                return states
            logger.info("waiting for %s", ", ".join(f"{n} ({states.get(n)})" for n in pending))
            time.sleep(POLL_SECONDS)
    finally:
        _end(starter)


def _end(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop ``process`` and its session (the queue's workers) once their work is done:
    SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _flatten(data: Any, prefix: str) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"PREFIX:a.b": 1}``: the numbers (and strings) of ``data``."""
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{'.' if ':' in prefix else ':'}{key}"))
        return flat
    return {prefix: data} if isinstance(data, int | float | str) else {}


def _lookup(document: dict[str, Any], key: str) -> Any:
    """The value at the dotted ``key`` of ``document`` (``None`` if absent)."""
    for part in key.split("."):
        document = document.get(part) if isinstance(document, dict) else None
    return document


def experiments(root: Path) -> dict[str, dict[str, Any]]:
    """The experiments of the workspace's baseline commit, from ``dvc exp show --json``:
    ``{name: {"rev": commit, "params": params.yaml's data, "metrics": {file: data}}}``."""
    shown = json.loads(_check(_dvc("exp", "show", "--json"), root))
    found: dict[str, dict[str, Any]] = {}
    for baseline in shown:
        for exp_range in baseline.get("experiments") or []:
            for state in exp_range["revs"]:
                data = state.get("data") or {}
                params = (data.get("params") or {}).get(PARAMS_FILE, {}).get("data", {})
                metrics = {path: entry.get("data", {})
                           for path, entry in (data.get("metrics") or {}).items()}
                found[state.get("name") or exp_range.get("name")] = {
                    "rev": state["rev"], "params": params, "metrics": metrics}
    return found


def _committed_json(root: Path, rev: str, path: str) -> dict[str, Any]:
    """The JSON file ``path`` as the experiment commit ``rev`` holds it (``{}`` if absent)."""
    done = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True,
                          text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def results_table(root: Path, names: list[str], grid: dict[str, list[Any]],
                  metrics_files: list[str]) -> list[dict[str, Any]]:
    """One row per experiment of ``names``: its name, commit, the grid's params as DVC
    recorded them, every metric ``dvc exp show`` reports (``file:key``) and those of
    ``metrics_files`` (JSON files that are outputs, not declared metrics, read from the
    experiment's commit). Raises :class:`KeyError` naming an experiment DVC does not show."""
    shown = experiments(root)
    missing = [name for name in names if name not in shown]
    if missing:
        raise KeyError(f"dvc exp show has no experiment {', '.join(missing)}")
    rows = []
    for name in names:
        exp = shown[name]
        row: dict[str, Any] = {"experiment": name, "rev": exp["rev"][:7]}
        row.update({key: _lookup(exp["params"], key) for key in grid})
        for path, data in exp["metrics"].items():
            row.update(_flatten(data, path))
        for path in metrics_files:
            row.update(_flatten(_committed_json(root, exp["rev"], path), path))
        rows.append(row)
    return rows


@flow(name="ssiuu-sweep")
def sweep(grid: dict[str, list[Any]], root: str = ".",
          engine: Literal["queue", "dask"] = "dask", workers: int = 2,
          scheduler: str | None = None, target: str | None = None,
          metrics_files: list[str] | None = None,
          name_prefix: str | None = None) -> list[dict[str, Any]]:
    """Run every point of ``grid`` (``{"key.path": [values]}``) as a DVC experiment of the
    project at ``root`` (a git repository), ``workers`` at a time, and return their results.

    ``engine="dask"`` runs ``dvc exp run --temp`` tasks on a local Dask cluster of
    ``workers`` processes, or on the Dask scheduler at ``scheduler`` (``tcp://host:8786``);
    ``engine="queue"`` uses DVC's experiment queue with ``workers`` jobs. ``target`` (a stage,
    e.g. ``evaluate_unlearned@gd``) stops each experiment there; ``metrics_files`` adds JSON
    outputs that are not declared DVC metrics to the table (e.g. ``metrics/unlearned/gd.json``
    when the run stops before ``report`` writes ``metrics/headline``). Experiments are named
    ``{name_prefix}-{i}`` (default prefix: ``sweep-`` and the time). On this machine (no
    ``scheduler``) each point gets ``runtime.num_threads`` = cores // ``workers``
    (:func:`share_cores`).

    The table (one row per point: ``experiment``, ``rev``, the grid's keys, the metrics as
    ``file:key``) is published as the table artifact ``sweep-results`` and returned. A failed
    point fails the flow after the other points finished.
    """
    project = Path(root).resolve()
    grid_points = points(grid)
    prefix = name_prefix or f"sweep-{datetime.now():%Y%m%d-%H%M%S}"
    names = [f"{prefix}-{i}" for i in range(len(grid_points))]
    if scheduler is None:
        grid_points = [share_cores(point, workers) for point in grid_points]
    if engine == "dask":
        runner = dask_experiments.with_options(task_runner=_dask_runner(workers, scheduler))
        runner(names, str(project), grid_points, target)
    elif engine == "queue":
        states = queue_experiments(names, project, grid_points, target, workers)
        failed = sorted(name for name, state in states.items() if state != "Success")
        if failed:
            raise RuntimeError(f"DVC's queue reports failed experiments: {', '.join(failed)} "
                               "(see `dvc queue logs NAME`)")
    else:
        raise ValueError(f"unknown engine {engine!r}: expected 'queue' or 'dask'")
    rows = results_table(project, names, grid, list(metrics_files or []))
    create_table_artifact(key="sweep-results", table=rows,
                          description=f"{len(rows)} DVC experiments ({engine}): "
                                      f"{', '.join(grid)}")
    return rows


def _grid_arg(text: str) -> tuple[str, list[Any]]:
    """``"a.b=1.0,3.0"`` -> ``("a.b", [1.0, 3.0])``: values split on top-level commas, each
    read as YAML (``seeds=[0],[1]`` -> ``[[0], [1]]``)."""
    from ruamel.yaml import YAML

    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=V1,V2,...")
    return key, YAML(typ="safe").load(f"[{values}]")


def main(argv: list[str] | None = None) -> None:
    """``python flows/sweep.py -g KEY=V1,V2 [-g ...] [--engine dask|queue] [--workers N]
    [--scheduler tcp://HOST:8786] [--target STAGE] [--metrics-file PATH ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-g", "--grid", dest="grid", action="append", type=_grid_arg,
                        required=True, metavar="KEY=V1,V2,...",
                        help="a swept param and its values (repeat for a product)")
    parser.add_argument("--engine", choices=("dask", "queue"), default="dask")
    parser.add_argument("--workers", type=int, default=2, help="experiments at once")
    parser.add_argument("--scheduler", help="a Dask scheduler address (default: local)")
    parser.add_argument("--target", help="stop each experiment at this stage")
    parser.add_argument("--metrics-file", dest="metrics_files", action="append", default=[],
                        help="a JSON output of the experiments to add to the table")
    parser.add_argument("--root", default=".", help="the DVC project (default: .)")
    args = parser.parse_args(argv)
    try:
        rows = sweep(grid=dict(args.grid), root=args.root, engine=args.engine,
                     workers=args.workers, scheduler=args.scheduler, target=args.target,
                     metrics_files=args.metrics_files)
    except (RuntimeError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
