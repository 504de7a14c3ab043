"""Small real projects for the orchestration tests (Prefect flows and deployments).

The pipeline copied into a temporary git repository with the tiny profile cut to the bone:
one seed, GD alone, the benign attack at one strength, short training. A full run takes a
minute or two of orchestration; its scores mean nothing and no test reads them as results.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ssiuu.profiles import apply_profile
from ssiuu.workspace import copy_pipeline

REPO = Path(__file__).parents[1]
REDUCED = {"seeds": [0],
           "base": {"train": {"steps": 150}}, "oracle": {"train": {"steps": 150}},
           "unlearn": {"methods": ["gd"], "train": {"max_steps": 10}},
           "relearn": {"attacks": ["benign"], "train": {"lrs": [1.0e-3], "steps": 10}}}
PREFECT_OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                   "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
                   "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run git in ``cwd`` with a throwaway identity; fail with its output."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"git {args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def reduced_project(folder: Path) -> Path:
    """The pipeline in ``folder`` (a new git repository) with the reduced tiny profile."""
    root = copy_pipeline(REPO, folder)
    apply_profile(root / "profiles" / "tiny.yaml", root / "params.yaml")
    overlay = folder.parent / f"{folder.name}-reduced.yaml"
    overlay.write_text(yaml.safe_dump(REDUCED))
    apply_profile(overlay, root / "params.yaml")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "project")
    return root


@contextlib.contextmanager
def local_prefect(home: Path) -> Iterator[None]:
    """Prefect with its home (a temporary server's database) in ``home``, offline, no
    server or MLflow store inherited from the environment, this venv's tools on PATH."""
    import prefect.context

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_HOME", str(home))
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        for key, value in PREFECT_OFFLINE.items():
            patch.setenv(key, value)
        for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
            patch.delenv(key, raising=False)
        prefect.context.refresh_global_settings_context()
        yield
    prefect.context.refresh_global_settings_context()
