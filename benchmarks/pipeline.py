"""Wall time and peak memory of every DVC stage of the pipeline, as a table.

Copies the project into a temporary git repository (so every stage really runs), applies
an optional profile, sets the torch thread count, then runs one ``dvc repro`` (every seed
of ``seeds``) and polls its process tree: each stage's process life and peak resident
memory, and the wall time of the whole run (the figure to hold to 15 minutes).

    python benchmarks/pipeline.py                 # the default, 2 threads
    python benchmarks/pipeline.py --threads 1 2   # compare thread counts
    python benchmarks/pipeline.py --profile tiny
    python benchmarks/pipeline.py --in-place      # this workspace: dvc repro --force
    python benchmarks/pipeline.py --profile smollm2 --stages-only

``--stages-only``: one stage of each kind (the first seed, unlearning method and attack)
and each stage's fixed cost apart from its compute: start-up (the interpreter and its
imports, to the stage's ``main``), loading and saving models (:mod:`ssiuu.model.timing`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml
from dvc.repo import Repo
from rich.console import Console
from rich.table import Table

from ssiuu.config.params import load_params
from ssiuu.config.profiles import apply_profile
from ssiuu.model.timing import TIMINGS_ENV
from ssiuu.workspace import copy_pipeline, isolated_env

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """:func:`~ssiuu.workspace.isolated_env`, no progress bars."""
    return {**isolated_env(), "TQDM_DISABLE": "1"}


def _stage_commands(repo: Path) -> dict[str, str]:
    """Each stage's expanded command, mapped to the stage's name."""
    with Repo(str(repo)) as dvc_repo:
        return {stage.cmd: stage.name for stage in dvc_repo.index.stages
                if getattr(stage, "cmd", None)}


def _stage_key(cmdline: list[str]) -> str | None:
    """``python stages/x.py args`` as the string DVC ran (None for other processes)."""
    for index, part in enumerate(cmdline):
        if part.startswith("stages/") and part.endswith(".py"):
            return " ".join(["python", *cmdline[index:]])
    return None


def _watch(process: subprocess.Popen) -> tuple[dict[str, list[float]], float]:
    """Poll the process tree until it ends: per stage command [first seen, last seen, peak
    MiB of that stage's processes], and the peak MiB of the whole tree."""
    root = psutil.Process(process.pid)
    stages: dict[str, list[float]] = {}
    peak = 0.0
    while process.poll() is None:
        now = time.perf_counter()
        try:
            tree = [root, *root.children(recursive=True)]
            sizes = {p.pid: p.memory_info().rss / 2**20 for p in tree if p.is_running()}
            peak = max(peak, sum(sizes.values()))
            for proc in tree:
                key = _stage_key(proc.cmdline())
                if key is None:
                    continue
                entry = stages.setdefault(key, [now, now, 0.0])
                entry[1] = now
                own = sizes.get(proc.pid, 0.0) + sum(sizes.get(c.pid, 0.0)
                                                     for c in proc.children(recursive=True))
                entry[2] = max(entry[2], own)
        except psutil.Error:
            pass
        time.sleep(0.05)
    return stages, peak


Row = tuple[str, float, float, str]


def _timed_repro(work: Path, env: dict[str, str], *args: str) -> tuple[list[Row], float, float]:
    """One ``dvc repro`` in ``work`` under ``env``, watched: (stage, seconds, peak MiB,
    command) rows in the order they ran, the total wall time and the peak MiB of the
    process tree."""
    names = _stage_commands(work)
    with tempfile.TemporaryFile(mode="w+") as errors:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "dvc", "repro", *args], cwd=work,
                                   env=env, stdout=subprocess.DEVNULL, stderr=errors,
                                   text=True)
        stages, peak = _watch(process)
        total = time.perf_counter() - start
        if process.returncode:
            errors.seek(0)
            raise SystemExit(f"dvc repro failed:\n{errors.read()[-3000:]}")
    rows = [(names.get(cmd, cmd), last - first, mib, cmd)
            for cmd, (first, last, mib) in sorted(stages.items(), key=lambda kv: kv[1][0])]
    return rows, total, peak


def _one_of_each(params_file: Path) -> dict:
    """The overlay that leaves one stage of each kind: the first seed, unlearning method
    and attack of ``params_file``."""
    params = load_params(params_file)
    return {"seeds": params.seeds[:1], "unlearn": {"methods": params.unlearn.methods[:1]},
            "relearn": {"attacks": params.relearn.attacks[:1]}}


def run(profile: str | None, threads: int, timings: Path | None = None
        ) -> tuple[list[Row], float, float]:
    """Run the whole pipeline once in a fresh temporary copy (:func:`_timed_repro`); with
    ``timings``, one stage of each kind, each recording its time split there."""
    with tempfile.TemporaryDirectory(prefix="ssiuu-bench-") as tmp:
        work = Path(tmp)
        copy_pipeline(REPO, work)
        if profile:
            apply_profile(work / "profiles" / f"{profile}.yaml", work / "params.yaml")
        overlay = {"runtime": {"num_threads": threads}}
        if timings is not None:
            overlay.update(_one_of_each(work / "params.yaml"))
        overlay_file = work / "bench.yaml"
        overlay_file.write_text(yaml.safe_dump(overlay))
        apply_profile(overlay_file, work / "params.yaml")
        overlay_file.unlink()
        for git in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
            subprocess.run(["git", *git], cwd=work, env=_env(), check=True)
        env = _env() if timings is None else {**_env(), TIMINGS_ENV: str(timings)}
        return _timed_repro(work, env)


def _split_table(title: str, rows: list[Row], timings: Path) -> Table:
    """Each stage's wall time split into start-up, load, save (its fixed cost) and the rest."""
    records = {" ".join(["python", *json.loads(line)["command"]]): json.loads(line)
               for line in timings.read_text().splitlines()}
    table = Table(title=title)
    for column in ("stage", "wall s", "start-up s", "load s", "save s", "fixed s",
                   "compute s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    fixed_total = compute_total = 0.0
    for stage, seconds, _, command in rows:
        record = records.get(command)
        if record is None:  # a stage that does not run through run_stage
            continue
        fixed = record["startup"] + record["load"] + record["save"]
        compute = record["total"] - fixed
        fixed_total, compute_total = fixed_total + fixed, compute_total + compute
        table.add_row(stage, f"{seconds:.1f}", f"{record['startup']:.1f}",
                      f"{record['load']:.1f}", f"{record['save']:.1f}", f"{fixed:.1f}",
                      f"{compute:.1f}")
    table.add_row("[b]summed[/b]", "", "", "", "", f"[b]{fixed_total:.1f}[/b]",
                  f"[b]{compute_total:.1f}[/b]")
    return table


def main() -> None:
    """Parse arguments, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", help="a profile of profiles/ to apply (default: none)")
    parser.add_argument("--threads", type=int, nargs="+",
                        help="torch thread counts to compare (default: 2)")
    parser.add_argument("--in-place", action="store_true",
                        help="run `dvc repro --force` in this workspace, as its params.yaml "
                             "stands, instead of a fresh copy: the same stages, and the "
                             "workspace's outputs and dvc.lock come out up to date")
    parser.add_argument("--stages-only", action="store_true",
                        help="one stage of each kind, each one's fixed cost (start-up, "
                             "load, save) apart from its compute")
    args = parser.parse_args()
    if args.in_place and (args.profile or args.threads or args.stages_only):
        parser.error("--in-place runs the workspace's own params.yaml: no --profile, "
                     "--threads or --stages-only with it")
    console = Console()
    setting = ("this workspace's params.yaml" if args.in_place
               else f"{args.profile or 'default'} profile, a fresh copy")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    if args.stages_only:
        setting += ", one stage of each kind"
    table = Table(title=f"ssiuu pipeline ({setting}) on {machine}")
    for column in ("threads", "stage", "wall s", "peak RSS MiB"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    if args.in_place:
        args.threads = [load_params(REPO / "params.yaml").runtime.num_threads]
    splits = []
    for threads in args.threads or [2]:
        with tempfile.TemporaryDirectory(prefix="ssiuu-timings-") as tmp:
            timings = Path(tmp) / "timings.jsonl" if args.stages_only else None
            # In place the stages run as the user runs them: their own MLflow store and
            # settings.
            rows, total, peak = (
                _timed_repro(REPO, {**os.environ, "TQDM_DISABLE": "1"}, "--force")
                if args.in_place else run(args.profile, threads, timings))
            if timings is not None:
                splits.append(_split_table(
                    f"Fixed cost per stage ({setting}, {threads} threads, {machine})", rows,
                    timings))
        for stage, seconds, mib, _ in rows:
            table.add_row(str(threads), stage, f"{seconds:.1f}", f"{mib:.0f}")
        table.add_row(str(threads), "stages, summed", f"{sum(r[1] for r in rows):.1f}", "")
        table.add_row(str(threads), "[b]dvc repro, wall[/b]", f"[b]{total:.1f}[/b]",
                      f"{peak:.0f}", end_section=True)
    console.print(table)
    console.print("One `dvc repro`; a stage's time is its process's life (python start-up "
                  "included); the wall time adds DVC's own work between stages.")
    for split in splits:
        console.print(split)
    if splits:
        console.print("start-up: process start to the stage's main (interpreter, imports); "
                      "load / save: models read and written; compute: the rest.")

if __name__ == "__main__":
    main()
