"""Small real projects for the orchestration tests (Prefect flows and deployments).

The pipeline copied into a temporary git repository with the tiny profile cut to the bone:
one seed, GD alone, the benign attack at one strength, short training. A full run takes a
minute or two of orchestration; its scores mean nothing and no test reads them as results.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from ssiuu.config.profiles import apply_profile
from ssiuu.workspace import copy_pipeline, isolated_env

REPO = Path(__file__).parents[1]
REDUCED = {"seeds": [0],
           "base": {"train": {"steps": 150}}, "oracle": {"train": {"steps": 150}},
           "unlearn": {"methods": ["gd"], "train": {"max_steps": 10}},
           "relearn": {"attacks": ["benign"], "train": {"lrs": [1.0e-3], "steps": 10}}}


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run git in ``cwd`` with a throwaway identity; fail with its output."""
    done = subprocess.run(["git", *args], cwd=cwd, env=isolated_env(), capture_output=True,
                          text=True)
    assert done.returncode == 0, f"git {args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run this interpreter's DVC in ``cwd`` (:func:`~ssiuu.workspace.isolated_env`); fail
    with the end of its output."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=isolated_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, (
        f"dvc {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
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
    """This process's environment made :func:`~ssiuu.workspace.isolated_env` (Prefect's home,
    a temporary server's database, in ``home``) for the duration, Prefect's settings with it."""
    import prefect.context

    env = isolated_env(home)
    with pytest.MonkeyPatch.context() as patch:
        for key in set(os.environ) - set(env):
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        prefect.context.refresh_global_settings_context()
        yield
    prefect.context.refresh_global_settings_context()


def flow_module(name: str) -> Callable:
    """A module-scoped fixture: ``flows.<name>`` imported under :func:`local_prefect` with a
    home of its own."""
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
        with local_prefect(tmp_path_factory.mktemp("prefect")):
            yield importlib.import_module(f"flows.{name}")

    return fixture


def project_fixture(name: str) -> Callable:
    """A module-scoped fixture: :func:`reduced_project` in a temporary folder ``name``."""
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return reduced_project(tmp_path_factory.mktemp(name) / "repo")

    return fixture
