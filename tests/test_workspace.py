"""Copying the pipeline into a fresh folder and the environment its tools run in there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ssiuu.model.runtime import OFFLINE_DEFAULTS
from ssiuu.workspace import PIPELINE_FILES, copy_pipeline, isolated_env

REPO = Path(__file__).parents[1]


def test_the_copy_has_the_pipeline_without_inbox_or_prepared_data(tmp_path):
    root = copy_pipeline(REPO, tmp_path / "copy")
    assert all((root / name).exists() for name in PIPELINE_FILES)
    assert not (root / "data" / "inbox").exists() and not (root / "data" / "prepared").exists()
    assert not list(root.rglob("__pycache__"))
    assert (root / "dvc.yaml").read_bytes() == (REPO / "dvc.yaml").read_bytes()


def test_the_isolated_env_drops_the_caller_s_servers_and_runs_this_venv(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("SSIUU_CALLER_SETTING", "kept")
    env = isolated_env(tmp_path / "prefect")
    assert not any(key.startswith(("MLFLOW_", "PREFECT_API")) for key in env)
    assert env["PREFECT_HOME"] == str(tmp_path / "prefect")
    assert {key: env[key] for key in OFFLINE_DEFAULTS} == OFFLINE_DEFAULTS
    assert env["SSIUU_CALLER_SETTING"] == "kept"
    assert "PREFECT_HOME" not in isolated_env()
    found = subprocess.run(["python", "-c", "import sys; print(sys.executable)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found).parent == Path(sys.executable).parent
    repo = tmp_path / "repo"
    repo.mkdir()
    for command in (["git", "init", "-q"], ["git", "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(command, cwd=repo, env={**env, "HOME": str(tmp_path)}, check=True)
