"""Wall time and peak memory of every DVC stage of the pipeline, as a table.

Copies the project into a temporary git repository (so every stage really runs), applies
an optional profile, sets the torch thread count, then runs ``dvc repro --single-item``
stage by stage in DAG order, polling the resident memory of each stage's process tree.

    python benchmarks/pipeline.py                 # the default, 2 threads
    python benchmarks/pipeline.py --threads 1 2   # compare thread counts
    python benchmarks/pipeline.py --profile tiny
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

import networkx as nx
import psutil
import yaml
from dvc.repo import Repo
from rich.console import Console
from rich.table import Table

from ssiuu.profiles import apply_profile
from ssiuu.runtime import OFFLINE_DEFAULTS
from ssiuu.workspace import copy_pipeline

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, **OFFLINE_DEFAULTS, "TQDM_DISABLE": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def _measure(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak RSS of its process tree in MiB)."""
    with tempfile.TemporaryFile(mode="w+") as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL,
                                   stderr=errors, text=True)
        root = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - start
        if process.returncode:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{errors.read()[-3000:]}")
    return wall, peak / 2**20


def _stage_order(repo: Path) -> list[str]:
    with Repo(str(repo)) as dvc_repo:
        graph = dvc_repo.index.graph
        return [stage.name for stage in reversed(list(nx.topological_sort(graph)))]


def run(profile: str | None, threads: int) -> list[tuple[str, float, float]]:
    """Run the whole pipeline once; return (stage, seconds, peak MiB) rows."""
    with tempfile.TemporaryDirectory(prefix="ssiuu-bench-") as tmp:
        work = Path(tmp)
        copy_pipeline(REPO, work)
        if profile:
            apply_profile(work / "profiles" / f"{profile}.yaml", work / "params.yaml")
        threads_overlay = work / "threads.yaml"
        threads_overlay.write_text(yaml.safe_dump({"runtime": {"num_threads": threads}}))
        apply_profile(threads_overlay, work / "params.yaml")
        for git in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
            subprocess.run(["git", *git], cwd=work, env=_env(), check=True)
        rows = []
        for stage in _stage_order(work):
            command = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
            rows.append((stage, *_measure(command, work)))
        return rows


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help="a profile of profiles/ to apply (default: none)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2],
                        help="torch thread counts to compare (default: 2)")
    args = parser.parse_args()
    console = Console()
    title = (f"ssiuu pipeline ({args.profile or 'default'} profile) on {platform.machine()}, "
             f"{os.cpu_count()} CPUs")
    table = Table(title=title)
    for column in ("threads", "stage", "wall s", "peak RSS MiB"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for threads in args.threads:
        rows = run(args.profile, threads)
        for stage, seconds, peak in rows:
            table.add_row(str(threads), stage, f"{seconds:.1f}", f"{peak:.0f}")
        total = sum(seconds for _, seconds, _ in rows)
        table.add_row(str(threads), "[b]total[/b]", f"[b]{total:.1f}[/b]",
                      f"{max(peak for *_, peak in rows):.0f}", end_section=True)
    console.print(table)
    console.print("Each stage includes DVC's own start-up (`dvc repro --single-item`).")


if __name__ == "__main__":
    main()
