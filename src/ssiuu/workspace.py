"""Copying the pipeline's definition (code, params, DVC files, inputs) into a fresh folder.

Used to run the whole pipeline in isolation, e.g. in a temporary git repository, without
the outputs or caches of the source checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PIPELINE_FILES = ("pyproject.toml", "params.yaml", "dvc.yaml", "prefect.yaml", ".dvcignore",
                  ".gitignore", "data", "stages", "src", "flows", "profiles", ".dvc/config",
                  ".dvc/.gitignore")
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
