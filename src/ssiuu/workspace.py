"""Copying the pipeline's definition (code, params, DVC files, inputs) into a fresh folder.

Used to run the whole pipeline in isolation, e.g. in a temporary git repository, without
the outputs or caches of the source checkout, and with an environment of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from ssiuu.model.runtime import OFFLINE_DEFAULTS

PIPELINE_FILES = ("pyproject.toml", "params.yaml", "dvc.yaml", "prefect.yaml", ".dvcignore",
                  ".gitignore", "data", "stages", "src", "flows", "profiles", ".dvc/config",
                  ".dvc/.gitignore")
# Prefect without telemetry, and a temporary server given time to start on a busy machine.
PREFECT_OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
# Who commits in a throwaway repository.
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "ssiuu", "GIT_AUTHOR_EMAIL": "ssiuu@localhost",
                "GIT_COMMITTER_NAME": "ssiuu", "GIT_COMMITTER_EMAIL": "ssiuu@localhost"}
_SKIPPED = shutil.ignore_patterns("prepared", "inbox", "request_status", "__pycache__",
                                  "*.egg-info")


def copy_pipeline(source: str | Path, target: str | Path) -> Path:
    """Copy :data:`PIPELINE_FILES` from ``source`` to ``target`` (prepared data and the
    request inbox and statuses excluded)."""
    source, target = Path(source), Path(target)
    for name in PIPELINE_FILES:
        origin = source / name
        if origin.is_dir():
            shutil.copytree(origin, target / name, ignore=_SKIPPED)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / name)
    return target


def isolated_env(prefect_home: str | Path | None = None) -> dict[str, str]:
    """The environment to run a copied pipeline's tools in: this interpreter's tools first
    on ``PATH``, the offline defaults, Prefect offline, a git identity, and no Prefect or
    MLflow setting inherited from the caller (no server, no tracking store); Prefect's home
    (its temporary server's database) in ``prefect_home`` when given."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PREFECT_", "MLFLOW_"))}
    env.update({**OFFLINE_DEFAULTS, **PREFECT_OFFLINE, **GIT_IDENTITY,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    if prefect_home is not None:
        env["PREFECT_HOME"] = str(prefect_home)
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a local server a run starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
