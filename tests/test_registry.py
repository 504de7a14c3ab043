"""The model registry, against a real SQLite store and a real ``mlflow server``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ssiuu.config.errors import RegistryError
from ssiuu.release.registry import (
    GATE_REASONS_TAG,
    GATE_TAG,
    LINEAGE_TAG,
    MODEL_SOURCE_TAG,
    NO_PRODUCTION,
    PRODUCTION_TAG,
    RANK_TAG,
    REQUESTS_TAG,
    WEIGHTS_SOURCE_TAG,
    VersionRecord,
    read_version,
    register,
    tracking_uri,
    version_description,
    versions_for_request,
)
from ssiuu.workspace import free_port

TEXTS = ["alice lives in paris", "bob works at acme", "the cat sat on the mat"]


@pytest.fixture(autouse=True)
def _no_tracking_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny Llama and its tokenizer, saved with ``save_pretrained``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ssiuu.model.loading import train_scratch_tokenizer

    tokenizer = train_scratch_tokenizer(TEXTS, 64)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2))
    folder = tmp_path_factory.mktemp("model") / "unlearned"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Small artifact files: a report, a plot and a data validation result."""
    folder = tmp_path_factory.mktemp("files")
    paths = {"report/robustness.html": folder / "robustness.html",
             "plots/x.png": folder / "x.png",
             "data/data_validation.json": folder / "data_validation.json"}
    paths["report/robustness.html"].write_text("<html><body>robustness</body></html>")
    paths["plots/x.png"].write_bytes(b"\x89PNG\r\n\x1a\nnot really a picture")
    paths["data/data_validation.json"].write_text(json.dumps({"passed": True}))
    return paths


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One project root (SQLite store) for the SQLite tests; each test uses its own name."""
    return tmp_path_factory.mktemp("project")


def _record(model_dir: Path, files: dict[str, Path], method: str, seed: int, *,
            passed: bool = True, rank: tuple[float, ...] = (0.2, -0.8),
            reasons: tuple[str, ...] = ()) -> VersionRecord:
    lineage_id = hashlib.sha256(f"{method}/{seed}/{rank}/{passed}".encode()).hexdigest()
    return VersionRecord(
        method=method, seed=seed, lineage_id=lineage_id,
        params={"unlearn.method": method, "unlearn.lr": 0.001, "unlearn.steps": 10,
                "unlearn.retain_reg": True},
        metrics={"unlearned.forget.accuracy": 0.25, "unlearned.retain.accuracy": 0.75,
                 "relearn.forget.accuracy": None},
        tags={"ssiuu.method": method, "ssiuu.data.forget.sha256": "ab" * 32},
        lineage={"requests": ["r1"], "seed": seed, "model": {"sha256": "cd" * 32}},
        artifacts=files, model_dir=model_dir, passed=passed,
        reasons=reasons if passed else (reasons or ("forget accuracy above the oracle's",)),
        rank=rank)


def _client(root: Path) -> MlflowClient:
    uri = tracking_uri(root)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _versions(client: MlflowClient, name: str) -> dict[int, dict[str, str]]:
    """Version number -> its tags."""
    return {int(mv.version): dict(mv.tags)
            for mv in client.search_model_versions(f"name = '{name}'")}


def _aliases(client: MlflowClient, name: str) -> dict[str, int]:
    return {alias: int(version)
            for alias, version in client.get_registered_model(name).aliases.items()}


def _assert_no_alias_on_failed(client: MlflowClient, name: str) -> None:
    tags = _versions(client, name)
    for version in _aliases(client, name).values():
        assert tags[version][GATE_TAG] == "passed"


def test_tracking_uri_defaults_to_sqlite_under_root(tmp_path, monkeypatch):
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:1"


def test_register_logs_runs_and_versions_that_read_back(root, model_dir, files):
    name = "ssiuu-basic"
    records = [_record(model_dir, files, "gd", 0, rank=(0.2, -0.9)),
               _record(model_dir, files, "gd", 1, rank=(0.1, -0.8)),
               _record(model_dir, files, "npo", 0, passed=False, rank=(0.0, -0.95))]
    out = register(name, records, requests=["r2", "r1"], model_source="scratch",
                   log_weights=False, root=root, description="demo")

    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert [(v.version, v.method, v.seed, v.passed, v.created) for v in out] == [
        (1, "gd", 0, True, True), (2, "gd", 1, True, True), (3, "npo", 0, False, True)]
    assert [v.aliases for v in out] == [(), ("candidate", "production"), ()]

    record = read_version(name, 2, root=root)
    folder = model_dir.resolve().as_uri()
    assert record["aliases"] == ["candidate", "production"]
    assert record["source"] == folder
    assert record["tags"] == {
        "ssiuu.method": "gd", "ssiuu.seed": "1", "ssiuu.data.forget.sha256": "ab" * 32,
        LINEAGE_TAG: records[1].lineage_id, GATE_TAG: "passed", GATE_REASONS_TAG: "none",
        RANK_TAG: "[0.1, -0.8]", WEIGHTS_SOURCE_TAG: folder}
    assert record["params"] == {"unlearn.method": "gd", "unlearn.lr": "0.001",
                                "unlearn.steps": "10", "unlearn.retain_reg": "True"}
    assert record["metrics"] == {"unlearned.forget.accuracy": 0.25,
                                 "unlearned.retain.accuracy": 0.75}
    assert record["lineage"] == records[1].lineage
    failed = read_version(name, 3, root=root)
    assert failed["tags"][GATE_TAG] == "failed"
    assert failed["tags"][GATE_REASONS_TAG] == "forget accuracy above the oracle's"
    assert failed["aliases"] == []

    client = _client(root)
    run = client.get_run(record["run_id"])
    assert run.info.run_name == "gd-seed1"
    assert run.data.tags["ssiuu.data.forget.sha256"] == "ab" * 32
    artifacts = {item.path for folder in ("report", "plots", "data", "model")
                 for item in client.list_artifacts(run.info.run_id, folder)}
    assert artifacts == {"report/robustness.html", "plots/x.png",
                         "data/data_validation.json", "model/pointer.json"}
    experiment = client.get_experiment_by_name(name)
    assert experiment.artifact_location == (root / "mlartifacts" / name).resolve().as_uri()
    assert list((root / "mlartifacts" / name).rglob("robustness.html"))
    model = client.get_registered_model(name)
    assert model.description == "demo"
    assert client.get_model_version(name, "2").description == (
        "gd, seed 1, requests r1, r2: passed the release gate (releasable)")
    assert client.get_model_version(name, "3").description == (
        "npo, seed 0, requests r1, r2: held back by the release gate: forget accuracy above "
        "the oracle's")
    assert model.tags[REQUESTS_TAG] == "r1,r2"
    assert model.tags[MODEL_SOURCE_TAG] == "scratch"
    assert model.tags[PRODUCTION_TAG] == "version 2"
    with pytest.raises(RegistryError, match="no version 9"):
        read_version(name, 9, root=root)


def test_register_is_idempotent_and_append_only(root, model_dir, files):
    name = "ssiuu-append"
    client = _client(root)
    first = [_record(model_dir, files, "gd", 0, rank=(0.3, -0.5)),
             _record(model_dir, files, "npo", 0, passed=False, rank=(0.2, -0.5))]
    register(name, first, requests=["r1"], model_source="scratch", log_weights=False,
             root=root)
    before = _versions(client, name)
    experiment_id = client.get_experiment_by_name(name).experiment_id

    again = register(name, first, requests=["r1"], model_source="scratch", log_weights=False,
                     root=root)
    assert [(v.version, v.created) for v in again] == [(1, False), (2, False)]
    assert _versions(client, name) == before
    assert len(client.search_runs([experiment_id])) == 2
    assert _aliases(client, name) == {"candidate": 1, "production": 1}

    better = _record(model_dir, files, "gd", 1, rank=(0.1, -0.5))
    (added,) = register(name, [better], requests=["r1"], model_source="scratch",
                        log_weights=False, root=root)
    assert (added.version, added.created, added.aliases) == (3, True,
                                                             ("candidate", "production"))
    after = _versions(client, name)
    assert {version: after[version] for version in before} == before

    best_but_failed = _record(model_dir, files, "ssiuu", 0, passed=False, rank=(-1.0, -1.0))
    (failed,) = register(name, [best_but_failed], requests=["r1"], model_source="scratch",
                         log_weights=False, root=root)
    assert (failed.version, failed.passed, failed.aliases) == (4, False, ())
    assert _aliases(client, name) == {"production": 3}
    assert client.get_registered_model(name).tags[PRODUCTION_TAG] == "version 3"
    _assert_no_alias_on_failed(client, name)
    assert {version: tags for version, tags in _versions(client, name).items()
            if version in after} == after


def test_no_version_passed_means_no_production(root, model_dir, files):
    name = "ssiuu-failing"
    records = [_record(model_dir, files, "gd", seed, passed=False, rank=(0.1 * seed, 0.0))
               for seed in (0, 1)]
    out = register(name, records, requests=["r1"], model_source="scratch", log_weights=False,
                   root=root)
    assert [(v.version, v.passed, v.aliases) for v in out] == [(1, False, ()), (2, False, ())]
    model = _client(root).get_registered_model(name)
    assert model.aliases == {}
    assert model.tags[PRODUCTION_TAG] == NO_PRODUCTION


@pytest.mark.parametrize(("requests", "model_source"), [(["r9"], "scratch"),
                                                        (["r1"], "other-model")])
def test_another_request_set_or_model_is_refused_before_writing(root, model_dir, files,
                                                                requests, model_source):
    name = f"ssiuu-conflict-{model_source}"
    client = _client(root)
    register(name, [_record(model_dir, files, "gd", 0)], requests=["r1"],
             model_source="scratch", log_weights=False, root=root)
    experiment_id = client.get_experiment_by_name(name).experiment_id

    with pytest.raises(RegistryError, match="registry.model_name") as caught:
        register(name, [_record(model_dir, files, "gd", 1)], requests=requests,
                 model_source=model_source, log_weights=False, root=root)
    assert "[r1]" in str(caught.value)
    assert f"[{requests[0]}]" in str(caught.value)
    assert "different registry.model_name" in str(caught.value)
    assert list(_versions(client, name)) == [1]
    assert len(client.search_runs([experiment_id])) == 1
    assert client.get_registered_model(name).tags[REQUESTS_TAG] == "r1"


def test_logged_weights_load_back(root, model_dir, files, monkeypatch):
    import mlflow
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = "ssiuu-weights"
    (out,) = register(name, [_record(model_dir, files, "gd", 0)], requests=["r1"],
                      model_source="scratch", log_weights=True, root=root)
    assert read_version(name, out.version, root=root)["source"].startswith("models:/")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(root))
    loaded = mlflow.transformers.load_model(f"models:/{name}@production",
                                            return_type="components")
    original = AutoModelForCausalLM.from_pretrained(model_dir)
    for key, tensor in original.state_dict().items():
        assert torch.equal(loaded["model"].state_dict()[key], tensor)
    text = TEXTS[0]
    assert loaded["tokenizer"](text)["input_ids"] == \
        AutoTokenizer.from_pretrained(model_dir)(text)["input_ids"]


def test_versions_for_request(root, model_dir, files):
    for name, requests in (("req-b", ["beta"]), ("req-a", ["alpha", "beta"]),
                           ("req-c", ["alphabet"])):
        register(name, [_record(model_dir, files, "gd", 0),
                        _record(model_dir, files, "npo", 1, passed=False)],
                 requests=requests, model_source="scratch", log_weights=False, root=root)

    rows = versions_for_request("beta", root=root)
    assert [(row["name"], row["version"]) for row in rows] == [
        ("req-a", 1), ("req-a", 2), ("req-b", 1), ("req-b", 2)]
    assert rows[0] == {"name": "req-a", "version": 1, "method": "gd", "seed": 0,
                       "gate": "passed", "aliases": ["candidate", "production"]}
    assert rows[1] == {"name": "req-a", "version": 2, "method": "npo", "seed": 1,
                       "gate": "failed", "aliases": []}
    assert [row["name"] for row in versions_for_request("alpha", root=root)] == ["req-a"] * 2
    assert versions_for_request("gamma", root=root) == []


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    """A real ``mlflow server`` on ``port`` with its store and artifacts in ``folder``,
    answering /health (its own process group)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = folder / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1", "--backend-store-uri",
             f"sqlite:///{folder}/server.db", "--artifacts-destination", str(folder / "art")],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                        timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"mlflow server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop the server's process group (``sig``; SIGKILL after 15 s)."""
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory):
    """A real ``mlflow server`` on a free port, stopped (its process group) at the end."""
    port = free_port()
    process = _start_server(tmp_path_factory.mktemp("server"), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def test_register_through_a_tracking_server(server_uri, tmp_path, model_dir, files,
                                            monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_uri)
    name = "ssiuu-server"
    records = [_record(model_dir, files, "gd", 0, rank=(0.2, -0.5)),
               _record(model_dir, files, "npo", 0, passed=False, rank=(0.1, -0.5))]
    out = register(name, records, requests=["r1"], model_source="scratch", log_weights=False,
                   root=tmp_path)
    assert os.environ["MLFLOW_TRACKING_URI"] == server_uri
    assert [(v.version, v.created, v.aliases) for v in out] == [
        (1, True, ("candidate", "production")), (2, True, ())]
    again = register(name, records, requests=["r1"], model_source="scratch",
                     log_weights=False, root=tmp_path)
    assert [(v.version, v.created, v.aliases) for v in again] == [
        (1, False, ("candidate", "production")), (2, False, ())]

    client = MlflowClient(tracking_uri=server_uri, registry_uri=server_uri)
    assert sorted(_versions(client, name)) == [1, 2]
    _assert_no_alias_on_failed(client, name)
    record = read_version(name, 1, root=tmp_path)
    assert record["source"].startswith("mlflow-artifacts:/")
    assert record["source"].endswith(f"/{record['run_id']}/artifacts/model")
    assert record["tags"][WEIGHTS_SOURCE_TAG] == model_dir.resolve().as_uri()
    assert record["lineage"] == records[0].lineage
    assert not (tmp_path / "mlartifacts").exists()
    assert [(row["version"], row["aliases"]) for row in versions_for_request(
        "r1", root=tmp_path)] == [(1, ["candidate", "production"]), (2, [])]

    (weights,) = register("ssiuu-server-weights", records[:1], requests=["r1"],
                          model_source="scratch", log_weights=True, root=tmp_path)
    assert (weights.version, weights.aliases) == (1, ("candidate", "production"))
    import mlflow

    loaded = mlflow.transformers.load_model("models:/ssiuu-server-weights@production",
                                            return_type="components")
    assert loaded["model"].config.hidden_size == 16


REGISTER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from test_registry import _record
from ssiuu.release.registry import register
args = json.loads(sys.argv[2])
files = {target: Path(path) for target, path in args["files"].items()}
records = [_record(Path(args["model_dir"]), files, method, seed)
           for method, seed in args["records"]]
out = register(args["name"], records, requests=["r1"], model_source="scratch",
               log_weights=args["log_weights"], root=Path(args["root"]))
print(json.dumps([(v.version, v.created) for v in out]))
"""


def _register_process(root: Path, model_dir: Path, files: dict[str, Path], name: str,
                      records: list[tuple[str, int]], log_weights: bool,
                      env: dict[str, str] | None = None) -> subprocess.Popen:
    """`register` in a process of its own (``run_stage`` prints a RegistryError as one line:
    here the test reads the exception's class and message from stderr)."""
    payload = json.dumps({"root": str(root), "model_dir": str(model_dir), "name": name,
                          "files": {t: str(p) for t, p in files.items()},
                          "records": records, "log_weights": log_weights})
    return subprocess.Popen([sys.executable, "-c", REGISTER, str(Path(__file__).parent),
                             payload], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def test_two_registrations_at_once_on_a_fresh_store_make_one_version_per_lineage(
        tmp_path, model_dir, files):
    records = [("gd", 0), ("npo", 0)]
    runs = [_register_process(tmp_path, model_dir, files, "ssiuu-race", records, False)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-3000:] for _, err in outputs]
    assert all("Traceback" not in err for _, err in outputs)
    made = sorted(json.loads(out.splitlines()[-1]) for out, _ in outputs)
    assert made == [[[1, False], [2, False]], [[1, True], [2, True]]]
    assert sorted(_versions(_client(tmp_path), "ssiuu-race")) == [1, 2]


def test_a_server_killed_mid_registration_fails_fast_and_the_rerun_leaves_no_orphan(
        tmp_path, model_dir, files):
    folder, port = tmp_path / "server", free_port()
    folder.mkdir()
    uri = f"http://127.0.0.1:{port}"
    records = [("gd", 0), ("gd", 1), ("npo", 0), ("npo", 1)]
    server = _start_server(folder, port)
    try:
        started = time.monotonic()
        run = _register_process(tmp_path, model_dir, files, "ssiuu-killed", records, True,
                                {"MLFLOW_TRACKING_URI": uri})
        while not list((folder / "art").rglob("model.safetensors")):  # weights uploading
            assert run.poll() is None and time.monotonic() - started < 120
            time.sleep(0.05)
        _stop(server, signal.SIGKILL)
        killed = time.monotonic()
        _, err = run.communicate(timeout=120)
        assert run.returncode != 0 and time.monotonic() - killed < 60
        assert f"RegistryError: tracking store {uri}:" in err, err[-3000:]
        assert len(err.strip().splitlines()[-1]) < 500  # one line, not a response body
        server = _start_server(folder, port)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.get_experiment_by_name("ssiuu-killed")
        left = client.search_runs([experiment.experiment_id])
        assert len(left) > len(client.search_model_versions("name = 'ssiuu-killed'"))
        again = _register_process(tmp_path, model_dir, files, "ssiuu-killed", records, True,
                                  {"MLFLOW_TRACKING_URI": uri})
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err[-3000:]
        versions = client.search_model_versions("name = 'ssiuu-killed'")
        lineages = sorted(v.tags[LINEAGE_TAG] for v in versions)
        assert len(versions) == len(records) and len(set(lineages)) == len(records)
        active = client.search_runs([experiment.experiment_id])
        assert sorted(r.info.run_id for r in active) == sorted(v.run_id for v in versions)
        logged = client.search_logged_models([experiment.experiment_id])
        assert sorted(m.model_id for m in logged) == sorted(
            v.source.removeprefix("models:/") for v in versions)
        weights = sorted(p.parent.parent.parent.name
                         for p in (folder / "art").rglob("model.safetensors"))
        assert weights == sorted(m.model_id for m in logged)  # no orphaned weight copy
    finally:
        _stop(server)


def test_a_version_s_description_names_the_first_reason_and_counts_the_rest(model_dir, files):
    record = _record(model_dir, files, "ssiuu", 2, passed=False,
                     reasons=("utility lost", "membership", "came back"))
    assert version_description(record, []) == (
        "ssiuu, seed 2, requests none: held back by the release gate: utility lost (+2 more)")
