"""The DVC pipeline as a Prefect flow: one task run per DVC stage, DVC decides what is stale.

Prefect only orchestrates. Each task asks DVC whether its stage is stale (``dvc status``
through DVC's API, a tenth of a second) and, if it is, runs ``python -m dvc repro
--single-item STAGE`` in the project: DVC's own lock file decides whether the stage reruns,
and the stage order is DVC's graph of ``dvc.yaml``: nothing about the pipeline is restated
here.

Params overrides (``-S key=value``, as in ``dvc exp run -S``) are validated (every key must
exist in ``params.yaml`` or in its typed schema) and then written into ``params.yaml`` once,
before any stage runs, comments kept; they stay there after the run, as they do after
``dvc exp run -S`` in the workspace, so DVC sees ordinary param changes and reruns exactly
the stages that read them.

Run it from the project root::

    python flows/pipeline.py -S unlearn.losses.ssiuu.lam=0.01 --target report
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote

import networkx as nx
from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.futures import PrefectFuture, wait
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel
from ruamel.yaml import YAML

from ssiuu.config.errors import ParamsError, SsiuuError
from ssiuu.config.layout import REGISTRY, ROBUSTNESS_REPORT, SUMMARY
from ssiuu.config.params import FlowsParams, Params, read_yaml

PARAMS_FILE = "params.yaml"
_STAGE_EXIT = re.compile(r"failed to run: .*, exited with (-?\d+)$")  # DVC's message
_TAIL_LINES = 20  # lines of a failed stage's output kept in its error
_STATUS_LOCK = threading.Lock()  # DVC's API is not known to be thread-safe


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero; ``returncode`` is the stage command's exit status
    when DVC reports it (a signal as ``-N`` or the shell's ``128 + N``), else DVC's own."""

    def __init__(self, stage: str, returncode: int, output: str) -> None:
        super().__init__(stage, returncode, output)
        self.stage, self.returncode, self.output = stage, returncode, output

    @property
    def killed(self) -> bool:
        """Whether a signal ended the stage: a transient failure worth a retry."""
        return self.returncode < 0 or 128 < self.returncode < 128 + signal.NSIG

    def __str__(self) -> str:
        return f"DVC stage '{self.stage}' failed (exit {self.returncode}):\n{self.output}"


def _address(stage: Any) -> str:
    """The stage as ``dvc repro`` names it from the project's root (DVC's ``addressing``,
    which is relative to the current directory instead): ``unlearn@gd`` for a stage of the
    root ``dvc.yaml``, ``sub/dvc.yaml:name`` for another one, the path of a ``.dvc`` file."""
    from dvc.dvcfile import PROJECT_FILE
    from dvc.stage import PipelineStage

    if not isinstance(stage, PipelineStage):
        return stage.path_in_repo
    if stage.path_in_repo == PROJECT_FILE:
        return stage.name
    return f"{stage.path_in_repo}:{stage.name}"


def _dag(root: Path, target: str | None = None) -> nx.DiGraph:
    """DVC's stage graph of the project at ``root`` with an edge from each stage to every
    stage that reads its outputs, nodes named as ``dvc repro`` takes them and numbered by
    their place in the DVC files (``order``); with ``target``, that stage and its ancestors."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
        graph = repo.index.graph
        dag = nx.DiGraph()
        dag.add_nodes_from((_address(stage), {"order": i}) for i, stage in enumerate(stages))
        dag.add_edges_from((_address(dep), _address(stage)) for stage, dep in graph.edges)
    if target is None:
        return dag
    if target not in dag:
        raise ValueError(f"unknown stage {target!r}; the stages are: {', '.join(dag)}")
    return dag.subgraph(nx.ancestors(dag, target) | {target}).copy()


def _order(dag: nx.DiGraph) -> list[str]:
    """A topological order of ``dag``, ties broken by the stages' place in ``dvc.yaml``."""
    return list(nx.lexicographical_topological_sort(dag, key=lambda n: dag.nodes[n]["order"]))


def stage_order(root: Path, target: str | None = None) -> list[str]:
    """Every stage of the DVC project at ``root`` (expanded names such as ``unlearn@gd``),
    each after every stage it depends on, ties in ``dvc.yaml`` order; with ``target``, only
    that stage and its ancestors."""
    return _order(_dag(Path(root), target))


def _parse_override(override: str) -> tuple[list[str], Any]:
    """``"a.b=1e-3"`` -> ``(["a", "b"], 0.001)``: the value is read as YAML, as DVC's ``-S``."""
    key, sep, value = override.partition("=")
    if not sep or not key or "" in key.split("."):
        raise ParamsError(f"override {override!r}: expected KEY=VALUE with a dotted KEY")
    return key.split("."), YAML(typ="safe").load(value)


def _in_schema(path: list[str]) -> bool:
    """Whether the dotted ``path`` names a field of the typed params schema."""
    node: Any = Params
    for part in path:
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return False
        field = node.model_fields.get(part)
        if field is None:
            return False
        node = next((kind for kind in (field.annotation, *get_args(field.annotation))
                     if isinstance(kind, type) and issubclass(kind, BaseModel)),
                    field.annotation)
    return True


def _in_document(document: Any, path: list[str]) -> bool:
    """Whether the dotted ``path`` is a key of the mapping ``document``."""
    for part in path:
        if not isinstance(document, dict) or part not in document:
            return False
        document = document[part]
    return True


def apply_overrides(params_path: Path, overrides: list[str]) -> None:
    """Write ``overrides`` (``key=value``) into ``params_path``, comments kept, as
    ``dvc exp run -S`` does; every key is checked first, so nothing is written if one is
    unknown. No overrides: the file is not touched."""
    if not overrides:
        return
    parsed = [_parse_override(override) for override in overrides]
    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    document = yaml_rt.load(params_path.read_text(encoding="utf-8"))
    for path, _ in parsed:
        if not (_in_document(document, path) or _in_schema(path)):
            raise ParamsError(f"{params_path.name}: {'.'.join(path)}: unknown parameter "
                              "(override not applied; nothing ran)")
    for path, value in parsed:
        node = document
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    with params_path.open("w", encoding="utf-8") as handle:
        yaml_rt.dump(document, handle)


def _check_applied(params_path: Path, overrides: list[str]) -> None:
    """Raise :class:`ParamsError` if ``params_path`` no longer holds ``overrides`` (edited
    after the flow applied them), so no stage runs with params the run did not ask for."""
    document = YAML(typ="safe").load(params_path.read_text(encoding="utf-8"))
    for override in overrides:
        path, value = _parse_override(override)
        current = document
        for part in path:
            current = current.get(part) if isinstance(current, dict) else None
        if current != value:
            raise ParamsError(f"{params_path.name}: {'.'.join(path)} is {current!r}, not the "
                              f"run's override {value!r}: the file changed during the run")


def _retry_settings(params_path: Path) -> tuple[int, float]:
    """``flows.retries`` and ``flows.retry_delay_seconds`` of ``params_path`` (the schema's
    defaults where absent). Only this section is validated here: a bad param elsewhere
    fails the `check` stage, in Prefect's view of the run."""
    flows = FlowsParams.model_validate(read_yaml(params_path).get("flows") or {})
    return flows.retries, flows.retry_delay_seconds


def _killed(prefect_task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect's retry condition: retry a stage that a signal killed, nothing else (a bad
    param or bad data exits 2 and fails the same way every time)."""
    try:
        state.result()
    except StageFailed as exc:
        return exc.killed
    except Exception:
        return False
    return False


def _stage_exit(lines: deque[str], returncode: int) -> int:
    """The stage command's exit status as DVC reports it, else DVC's own ``returncode``."""
    for line in reversed(lines):
        match = _STAGE_EXIT.search(line)
        if match:
            return int(match.group(1))
    return returncode


def _stale(project: Path, name: str) -> list[Any]:
    """What ``dvc status`` reports for the stage ``name`` of ``project`` alone (its changed
    dependencies, outputs or command, or ``always changed``); empty when its lock matches.

    Read through DVC's API in this process, one thread at a time (a DVC process per stage
    costs a second). It waits for DVC's repository lock as ``dvc --wait-for-lock`` does: a
    stage running beside it holds that lock while it reads or writes DVC's files."""
    from dvc.dvcfile import PROJECT_FILE
    from dvc.repo import Repo

    target = name if name.endswith(".dvc") or ":" in name else f"{PROJECT_FILE}:{name}"
    with _STATUS_LOCK, Repo(str(project), _wait_for_lock=True) as repo:
        status = repo.status(targets=[str(project / target)])
    return [change for changes in status.values() for change in changes]


@task(task_run_name="{name}", cache_policy=NO_CACHE, retry_condition_fn=_killed)
def run_stage(name: str, root: str, overrides: list[str]) -> str:
    """Run ``dvc repro --single-item name`` in ``root`` if DVC reports the stage stale, its
    output line by line into the run's log; ``"ran"`` if DVC ran the stage, ``"up to date"``
    if its lock matched.

    ``overrides`` were applied to ``params.yaml`` before the flow's first stage; they are
    checked to be still there. Raises :class:`StageFailed` on a non-zero exit.
    """
    logger = get_run_logger()
    project = Path(root)
    _check_applied(project / PARAMS_FILE, overrides)
    changes = _stale(project, name)
    if not changes:
        logger.info("Stage '%s' didn't change (dvc status), skipping", name)
        return "up to date"
    logger.info("Stage '%s' is stale: %s", name, changes)
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", name]
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    ran = False
    with subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip().rpartition("\r")[2]
            if not line:
                continue
            logger.info(line)
            tail.append(line)
            ran = ran or line.startswith(f"Running stage '{name}'")
    if process.returncode:
        raise StageFailed(name, _stage_exit(tail, process.returncode), "\n".join(tail))
    return "ran" if ran else "up to date"


def _registry_link(project: Path, record: dict[str, Any]) -> str:
    """The MLflow UI page of the registered model when the tracking server is http(s), else
    a ``file://`` link to the registry record."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/models/{quote(record['model'], safe='')}"
    return (project / REGISTRY).resolve().as_uri()


def _publish(project: Path) -> dict[str, Any] | None:
    """Publish the robustness report and the registered versions as Prefect artifacts, where
    the run left them; return the registry record (``None`` if there is none)."""
    if (project / SUMMARY).is_file() and (project / ROBUSTNESS_REPORT).is_file():
        create_markdown_artifact(
            key="robustness-summary",
            markdown=(project / ROBUSTNESS_REPORT).read_text(encoding="utf-8"),
            description=f"{ROBUSTNESS_REPORT} (scores in {SUMMARY})")
    if not (project / REGISTRY).is_file():
        return None
    record = json.loads((project / REGISTRY).read_text(encoding="utf-8"))
    versions = ", ".join(f"v{v['version']} {v['method']} seed {v['seed']} ({v['gate']})"
                         for v in record.get("versions", []))
    create_link_artifact(
        key="registered-versions", link=_registry_link(project, record),
        link_text=f"{record['model']}: {len(record.get('versions', []))} version(s)",
        description=f"{record.get('added', 0)} added this run; {versions or 'none'}")
    return record


@flow(name="ssiuu-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=1))
def pipeline(overrides: list[str] | None = None, target: str | None = None,
             root: str = ".") -> dict[str, Any]:
    """Run the DVC pipeline at ``root`` (up to ``target``, if given), one task per stage.

    ``overrides`` (``key=value``) are validated and written into ``params.yaml`` once, before
    the stage graph is read (``unlearn.methods`` decides which stages exist). Each stage's
    task is submitted with ``wait_for`` on its DVC upstream stages' tasks. A stage killed by
    a signal is retried up to ``flows.retries`` times (params.yaml, default 2), any other
    failure is not. Concurrency is one stage at a time by default: two
    ``dvc repro --single-item`` can run at once in one repository (DVC 3 holds its repo lock
    only while it reads and writes its files, not while a stage's command runs, and each task
    waits for that lock), so ``pipeline.with_options(task_runner=ThreadPoolTaskRunner(
    max_workers=N))`` (``--workers N``) runs independent stages side by side, each with its
    own ``runtime.num_threads`` torch threads.

    At the end, the robustness report is published as the Markdown artifact
    ``robustness-summary`` and the registered versions as the link artifact
    ``registered-versions``. Returns ``{"stages": {name: "ran" | "up to date"},
    "registry": metrics/registry.json's content or None}``.
    """
    project = Path(root).resolve()
    overrides = list(overrides or [])
    apply_overrides(project / PARAMS_FILE, overrides)
    retries, delay = _retry_settings(project / PARAMS_FILE)
    dag = _dag(project, target)
    stage_task = run_stage.with_options(retries=retries, retry_delay_seconds=delay)
    futures: dict[str, PrefectFuture[str]] = {}
    for name in _order(dag):
        upstream = [futures[parent] for parent in dag.predecessors(name)]
        futures[name] = stage_task.submit(name, str(project), overrides, wait_for=upstream)
    wait(list(futures.values()))
    stages = {name: future.result() for name, future in futures.items()}
    return {"stages": stages, "registry": _publish(project)}


def main(argv: list[str] | None = None) -> None:
    """``python flows/pipeline.py [-S key=value ...] [--target STAGE] [--workers N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="params.yaml override, as dvc exp run -S")
    parser.add_argument("--target", help="run only this stage and the stages it depends on")
    parser.add_argument("--root", default=".", help="the DVC project (default: .)")
    parser.add_argument("--workers", type=int, default=1,
                        help="stages run at once (default 1)")
    args = parser.parse_args(argv)
    runner = pipeline.with_options(task_runner=ThreadPoolTaskRunner(max_workers=args.workers))
    try:
        result = runner(overrides=args.overrides, target=args.target, root=args.root)
    except (StageFailed, SsiuuError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result["stages"], indent=2))


if __name__ == "__main__":
    main()
