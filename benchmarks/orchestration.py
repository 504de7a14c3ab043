"""Wall time of the Prefect flows against DVC alone, as a table.

1. **Pipeline flow overhead.** The project (a profile, or the default) is copied into two
   fresh temporary git repositories and run from nothing: in one by a single ``dvc repro``,
   in the other by ``flows/pipeline.py`` (one Prefect task per stage, each a
   ``dvc repro --single-item``; Prefect's temporary local server started by the flow, as a
   user without ``PREFECT_API_URL`` gets). Then each runs once more with every stage up to
   date. The overhead is the flow's extra wall time (target: under 10%).
2. **Sweep with 1 and 2 workers.** In a third copy the pipeline is run and committed once
   (untimed), then ``flows/sweep.py`` runs a 2-point grid of a GD knob as two DVC
   experiments through the Dask task runner, first with 1 worker and then with 2 (other
   values of the knob, so DVC's run cache answers nothing), each point rerunning what the
   knob feeds: unlearning, its evaluation, the attacks, the report and registration.

    python benchmarks/orchestration.py                   # the default, both parts
    python benchmarks/orchestration.py --profile tiny
    python benchmarks/orchestration.py --skip-sweep --flow-workers 1 2
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from ssiuu.config.profiles import apply_profile
from ssiuu.workspace import copy_pipeline, isolated_env

REPO = Path(__file__).resolve().parents[1]
KNOB = "unlearn.losses.gd.alpha"
SWEEP_VALUES = {1: (1.5, 2.0), 2: (2.5, 3.0)}  # workers -> the grid's two values


def _env(prefect_home: Path) -> dict[str, str]:
    """:func:`~ssiuu.workspace.isolated_env` with Prefect's home in ``prefect_home``, no
    progress bars."""
    return {**isolated_env(prefect_home), "TQDM_DISABLE": "1"}


def _project(folder: Path, profile: str | None, env: dict[str, str]) -> Path:
    """The pipeline in ``folder``, with ``profile`` applied, as a new git repository."""
    copy_pipeline(REPO, folder)
    if profile:
        apply_profile(folder / "profiles" / f"{profile}.yaml", folder / "params.yaml")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=folder, env=env, check=True)
    return folder


def _timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run ``command`` in ``cwd``; its wall seconds. Exits with its output's tail on failure."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed in {cwd}:\n"
                         f"{(done.stdout + done.stderr)[-4000:]}")
    return seconds


def _dvc_repro() -> list[str]:
    return [sys.executable, "-m", "dvc", "repro"]


def _pipeline_flow(workers: int) -> list[str]:
    return [sys.executable, "flows/pipeline.py", "--workers", str(workers)]


def overhead(profile: str | None, flow_workers: list[int]) -> list[tuple[str, float, float]]:
    """(run, from-nothing seconds, up-to-date seconds) for ``dvc repro`` and for the
    pipeline flow with each of ``flow_workers`` stages at once."""
    rows = []
    runs = [("dvc repro", _dvc_repro())]
    runs += [(f"pipeline flow, {n} worker{'s' * (n > 1)}", _pipeline_flow(n))
             for n in flow_workers]
    for label, command in runs:
        with tempfile.TemporaryDirectory(prefix="ssiuu-orch-") as tmp:
            env = _env(Path(tmp) / "prefect")
            project = _project(Path(tmp) / "repo", profile, env)
            first = _timed(command, project, env)
            again = _timed(command, project, env)
            rows.append((label, first, again))
            print(f"{label}: {first:.1f} s, up to date {again:.1f} s", flush=True)
    return rows


def sweep(profile: str | None) -> tuple[float, list[tuple[int, float]]]:
    """The untimed baseline's seconds, and (workers, seconds) of the 2-point sweep."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ssiuu-sweep-") as tmp:
        env = _env(Path(tmp) / "prefect")
        project = _project(Path(tmp) / "repo", profile, env)
        baseline = _timed(_dvc_repro(), project, env)
        subprocess.run(["git", "add", "-A"], cwd=project, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "baseline"], cwd=project, env=env, check=True)
        for workers, values in SWEEP_VALUES.items():
            command = [sys.executable, "flows/sweep.py", "--engine", "dask", "--workers",
                       str(workers), "-g", f"{KNOB}={values[0]},{values[1]}"]
            seconds = _timed(command, project, env)
            rows.append((workers, seconds))
            print(f"sweep, {workers} worker(s): {seconds:.1f} s", flush=True)
    return baseline, rows


def main() -> None:
    """Parse arguments, run the parts asked for, print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help="a profile of profiles/ to apply (default: none)")
    parser.add_argument("--flow-workers", type=int, nargs="+", default=[1],
                        help="stages at once in the pipeline flow (default: 1)")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    threads = yaml.safe_load((REPO / "params.yaml").read_text())["runtime"]["num_threads"]
    if args.profile:
        profile = yaml.safe_load((REPO / "profiles" / f"{args.profile}.yaml").read_text())
        threads = (profile.get("runtime") or {}).get("num_threads", threads)
    console = Console()
    table = Table(title=f"ssiuu orchestration ({args.profile or 'default'} profile, "
                        f"{threads} torch thread(s) per stage) on {platform.machine()}, "
                        f"{os.cpu_count()} CPUs")
    for column in ("run", "wall s", "vs dvc repro", "up to date s", "vs dvc repro "):
        table.add_column(column, justify="left" if column == "run" else "right")
    if not args.skip_overhead:
        rows = overhead(args.profile, args.flow_workers)
        _, plain, plain_again = rows[0]
        for label, first, again in rows:
            table.add_row(label, f"{first:.1f}", f"{first / plain - 1:+.1%}", f"{again:.1f}",
                          f"{again - plain_again:+.1f} s")
    if not args.skip_sweep:
        baseline, rows = sweep(args.profile)
        table.add_row("dvc repro (the sweep's baseline)", f"{baseline:.1f}", "", "", "",
                      end_section=True)
        for workers, seconds in rows:
            table.add_row(f"sweep of 2 points, {workers} Dask worker(s)",
                          f"{seconds:.1f}", "", "", "")
    console.print(table)
    console.print("Wall time of each command from start to exit (Python, DVC and, for the "
                  "flows, Prefect's temporary server start-up included). The sweep's points "
                  f"set {KNOB}.")


if __name__ == "__main__":
    main()
