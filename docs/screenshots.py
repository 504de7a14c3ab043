"""Take the README's two pictures with headless Chromium against real local servers.

``python docs/screenshots.py`` (from the project root, after ``make demo``):

- ``docs/img/mlflow-model.png``: the version of the registered model of
  ``metrics/registry.json`` that the last registration made ``candidate`` (else its first),
  in the MLflow UI (description, aliases, source run, tags), from a ``mlflow server`` on
  this project's store (``mlflow.db``, ``mlartifacts/``);
- ``docs/img/prefect-flow-run.png``: a ``deletion-requests`` flow run in the Prefect UI,
  from a temporary ``prefect server`` and a copy of the pipeline whose inbox holds one entry
  (a request reusing a registered id, which the flow rejects without touching a model).

Both servers listen on 127.0.0.1 only and are stopped on the way out; nothing in the
project changes but the two pictures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ssiuu.workspace import copy_pipeline, free_port, isolated_env  # noqa: E402

BIN = Path(sys.executable).parent
WINDOW = "1600,1100"


@contextlib.contextmanager
def _server(args: list[str], cwd: Path, env: dict[str, str], health: str,
            log: Path) -> Iterator[None]:
    """``args`` running until the block ends, once ``health`` answers 200 (90 s at most)."""
    with log.open("w") as output:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            time.sleep(1)
        else:
            raise SystemExit(f"{args[0]} did not start; {log}:\n{log.read_text()[-3000:]}")
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _shoot(url: str, out: Path, work: Path) -> None:
    """A screenshot of ``url`` after the page had 20 s of (virtual) time to render."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is missing (apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={work / 'chromium-profile'}", f"--window-size={WINDOW}",
                    "--virtual-time-budget=20000", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=180)
    print(f"{out}: {url}")


def mlflow_picture(project: Path, out: Path, work: Path) -> None:
    """The page of the version the last registration made ``candidate``."""
    registry = json.loads((project / "metrics" / "registry.json").read_text())
    name, versions = registry["model"], registry["versions"]
    shown = next((v for v in versions if "candidate" in v["aliases"]), versions[0])["version"]
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    with _server([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                  "--backend-store-uri", f"sqlite:///{project / 'mlflow.db'}",
                  "--default-artifact-root", str(project / "mlartifacts")],
                 project, env, f"http://127.0.0.1:{port}/health", work / "mlflow.log"):
        _shoot(f"http://127.0.0.1:{port}/#/models/{name}/versions/{shown}", out, work)


def prefect_picture(project: Path, out: Path, work: Path) -> None:
    """A deletion-requests flow run that rejected a request reusing a registered id."""
    from prefect.client.orchestration import SyncPrefectClient

    repo = copy_pipeline(project, work / "repo")
    taken = json.loads(next((repo / "data" / "requests").glob("*.json")).read_text())
    inbox = repo / "data" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "again.json").write_text(json.dumps(taken))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**isolated_env(work / "prefect-home"), "PREFECT_API_URL": api}
    with _server([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                  str(port)], work, env, f"{api}/health", work / "prefect.log"):
        subprocess.run([sys.executable, "-m", "flows.deletion_requests"], cwd=repo, env=env,
                       check=False, capture_output=True, timeout=600)
        with SyncPrefectClient(api) as client:
            run = client.read_flow_runs(limit=1)[0]
        _shoot(f"http://127.0.0.1:{port}/runs/flow-run/{run.id}", out, work)


def main() -> None:
    """Take both pictures (or the one named)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--only", choices=("mlflow", "prefect"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        if args.only in (None, "mlflow"):
            mlflow_picture(args.project, ROOT / "docs/img/mlflow-model.png", Path(work))
        if args.only in (None, "prefect"):
            prefect_picture(args.project, ROOT / "docs/img/prefect-flow-run.png", Path(work))


if __name__ == "__main__":
    main()
