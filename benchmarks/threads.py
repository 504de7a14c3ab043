"""Does a verdict hold across float round-off? The same pipeline at two torch thread counts.

Runs the whole pipeline (``dvc repro``, up to the registry) once per thread count in fresh
temporary copies of the project (a profile applied, ``runtime.num_threads`` set), then
prints, per method and seed, where unlearning stopped (inside the stop band, or the
position and distance of its closest check), the steps it took, and the release gate's
verdict of that version, for each run, and whether the runs agree. Two thread counts sum
floats in different orders, so every weight differs in its last bits; a rule with a
stated margin gives both runs the same outcome.

    python benchmarks/threads.py                   # the tiny profile, 1 and 2 threads
    python benchmarks/threads.py --profile none    # the default (about 15 min per run)
"""

from __future__ import annotations

import argparse
import json
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
Outcome = dict[tuple[str, str], dict[str, str]]


def _env() -> dict[str, str]:
    """:func:`~ssiuu.workspace.isolated_env`, no progress bars."""
    return {**isolated_env(), "TQDM_DISABLE": "1"}


def _outcomes(work: Path) -> Outcome:
    """Per (method, seed): the stop's outcome, its steps, and the gate's verdict."""
    registry = json.loads((work / "metrics" / "registry.json").read_text())
    gate = {(v["method"], str(v["seed"])): v["gate"] for v in registry["versions"]}
    out: Outcome = {}
    for path in sorted((work / "metrics" / "unlearn").glob("*.json")):
        record = json.loads(path.read_text())
        for seed, run in record["seeds"].items():
            if run.get("stop_rule") == "reference":
                stop = ("inside" if run["reached"] else
                        f"{run['stop_position']} {run['stop_distance']:.2f}")
            else:
                stop = "reached" if run["reached"] else "missed"
            out[(record["method"], seed)] = {"stop": stop, "steps": str(run["steps"]),
                                             "gate": gate.get((record["method"], seed), "-")}
    return out


def run(profile: str | None, threads: int) -> tuple[Outcome, float]:
    """The pipeline once in a fresh temporary copy at ``threads`` torch threads: its
    outcomes and wall seconds."""
    with tempfile.TemporaryDirectory(prefix="ssiuu-threads-") as tmp:
        work = Path(tmp)
        copy_pipeline(REPO, work)
        if profile:
            apply_profile(work / "profiles" / f"{profile}.yaml", work / "params.yaml")
        overlay = work / "threads.yaml"
        overlay.write_text(yaml.safe_dump({"runtime": {"num_threads": threads}}))
        apply_profile(overlay, work / "params.yaml")
        overlay.unlink()
        for git in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "threads"]):
            subprocess.run(["git", *git], cwd=work, env=_env(), check=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=work, env=_env(),
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"dvc repro at {threads} thread(s) failed:\n{done.stderr[-3000:]}")
        return _outcomes(work), time.perf_counter() - start


def main() -> None:
    """Run each thread count and print the per-version comparison."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny", help="a profile of profiles/, or none")
    parser.add_argument("--threads", type=int, nargs=2, default=[1, 2])
    args = parser.parse_args()
    profile = None if args.profile == "none" else args.profile
    runs = [run(profile, threads) for threads in args.threads]
    table = Table(title=f"Stop and gate per version, {args.profile} profile, "
                        f"torch threads {args.threads[0]} and {args.threads[1]}")
    table.add_column("method")
    table.add_column("seed")
    for threads in args.threads:
        for column in ("stop", "steps", "gate"):
            table.add_column(f"{column} ({threads})")
    table.add_column("same stop and gate")
    agree = True
    for key in sorted(runs[0][0]):
        one, two = runs[0][0][key], runs[1][0].get(key, {})
        same = (one["gate"] == two.get("gate")
                and one["stop"].split()[0] == two.get("stop", "").split()[0])
        agree &= same
        table.add_row(*key, *(one[c] for c in ("stop", "steps", "gate")),
                      *(two.get(c, "-") for c in ("stop", "steps", "gate")),
                      "yes" if same else "NO")
    console = Console()
    console.print(table)
    console.print(f"wall: {runs[0][1]:.0f} s ({args.threads[0]} thread(s)), "
                  f"{runs[1][1]:.0f} s ({args.threads[1]}); "
                  f"{'every version agrees' if agree else 'the runs DISAGREE'}")


if __name__ == "__main__":
    main()
