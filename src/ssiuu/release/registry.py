"""Unlearned models in the MLflow Model Registry: idempotent, append-only, gated by aliases.

Each :class:`VersionRecord` (one method and seed) becomes one MLflow run in the experiment
named after the registered model (params, metrics, tags, artifacts, ``lineage.json``) and one
model version made from that run. The version's tag ``ssiuu.lineage_id`` is the idempotency
key: a lineage already registered adds nothing. Versions and their tags are never edited;
only the registered model's tags (the index) and its aliases move:

- ``candidate``: the best (lowest rank) passing version among one call's records (removed
  when none of them passed);
- ``production``: the best passing version ever registered under the name. Without one the
  model tag ``ssiuu.production`` says why; an alias never points at a failed version.

Weights: with ``log_weights`` the model is logged with MLflow's ``transformers`` flavour and
that logged model is registered. Without it DVC stores the weights and the registry indexes
them: the run gets a small pointer, ``model/pointer.json`` (folder and file names), and the
version tag ``ssiuu.model.source`` names the folder. The version's ``source`` is the folder's
file URI on a store the client writes itself (SQLite): that store takes any URI. A tracking
server (``http(s)://``) refuses a local source outside the run's artifacts (MLflow 3.17,
``server/handlers.py::_validate_source_run``), so there the source is the pointer's artifact
folder in the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.entities.paged_list import PagedList
from mlflow.tracking._tracking_service.utils import _use_tracking_uri
from requests.exceptions import RequestException
from sqlalchemy.exc import SQLAlchemyError

from ssiuu.config.errors import RegistryError
from ssiuu.config.layout import check_request_id
from ssiuu.records.lineage import folder_files, model_sha256

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
MODEL_SOURCE_TAG = "ssiuu.model_source"
REQUESTS_TAG = "ssiuu.requests"
PRODUCTION_TAG = "ssiuu.production"
LINEAGE_TAG = "ssiuu.lineage_id"
METHOD_TAG = "ssiuu.method"
SEED_TAG = "ssiuu.seed"
GATE_TAG = "ssiuu.gate"
GATE_REASONS_TAG = "ssiuu.gate.reasons"
RANK_TAG = "ssiuu.rank"
WEIGHTS_SOURCE_TAG = "ssiuu.model.source"
WEIGHTS_HASH_TAG = "ssiuu.weights.sha256"  # of the logged model's files, at registration
CANDIDATE = "candidate"
PRODUCTION = "production"
NO_PRODUCTION = "none: no version passed the release gate"
LINEAGE_ARTIFACT = "lineage.json"
MODEL_ARTIFACT = "model"
_PIP_PACKAGES = ("mlflow", "torch", "transformers", "tokenizers")
_SERVER_SCHEMES = ("http", "https")
_QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
          "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
# MLflow's own HTTP settings, unless the caller set them: a tracking server that went away
# fails a call within about half a minute (MLflow's defaults retry for minutes)
BOUNDED = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "20", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@dataclass(frozen=True)
class VersionRecord:
    """One unlearned model (a method and a seed) to register.

    ``artifacts``: where each file goes in the run (``report/robustness.html``; the file
    keeps its own name) → the local file.
    """

    method: str
    seed: int
    lineage_id: str
    params: dict[str, str | int | float | bool]
    metrics: dict[str, float | None]
    tags: dict[str, str]
    lineage: dict
    artifacts: dict[str, Path]
    model_dir: Path
    passed: bool
    reasons: tuple[str, ...]
    rank: tuple[float, ...]


@dataclass(frozen=True)
class RegisteredVersion:
    """A record's model version after :func:`register` (``created`` False: it was there)."""

    name: str
    version: int
    method: str
    seed: int
    passed: bool
    created: bool
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    """What the release gate needs of a model version, read from its tags."""

    version: int
    passed: bool
    rank: tuple[float, ...]

    @classmethod
    def of(cls, version: ModelVersion) -> _Entry:
        rank = json.loads(version.tags.get(RANK_TAG, "[]"))
        return cls(version=int(version.version), passed=version.tags.get(GATE_TAG) == "passed",
                   rank=tuple(math.inf if math.isnan(value) else value for value in rank))

    @property
    def order(self) -> tuple[tuple[float, ...], int]:
        """Lower is better; the earlier version wins a tie."""
        return self.rank, self.version


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite store ``<root>/mlflow.db``."""
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{(Path(root) / 'mlflow.db').resolve()}"


def _is_server(uri: str) -> bool:
    return urlparse(uri).scheme in _SERVER_SCHEMES


@contextmanager
def _session(uri: str) -> Iterator[MlflowClient]:
    """A client on ``uri``, with MLflow's fluent API pointed there too, kept quiet and its
    HTTP calls bounded (:data:`BOUNDED`); a failure of the store (a server gone, a database
    that will not open) is a :class:`RegistryError` of one line naming ``uri``.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment;
    both it and the caller's setting are restored afterwards.
    """
    saved = {key: os.environ.get(key) for key in (TRACKING_URI_ENV, *_QUIET, *BOUNDED)}
    os.environ.update(_QUIET)
    os.environ.update({key: value for key, value in BOUNDED.items() if saved[key] is None})
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)
    try:
        with _use_tracking_uri(uri):
            yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    except (MlflowException, RequestException, SQLAlchemyError) as exc:
        raise RegistryError(f"tracking store {uri}: {type(exc).__name__}: "
                            f"{_first_line(exc)}") from None
    finally:
        mlflow_logger.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, at most 300 characters."""
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""


def _paged(search: Callable[[str | None], PagedList]) -> list:
    """Every item of a paged MLflow search (``search`` takes the page token)."""
    items: list = []
    token = None
    while True:
        page = search(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def _all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    return _paged(lambda token: client.search_model_versions(f"name = '{name}'",
                                                             page_token=token))


def _check_records(records: Sequence[VersionRecord]) -> None:
    for record in records:
        label = f"{record.method} seed {record.seed}"
        if not (record.model_dir / "config.json").is_file():
            raise RegistryError(f"{label}: {record.model_dir} is no saved model "
                                "(config.json missing)")
        for target, path in record.artifacts.items():
            if not Path(path).is_file():
                raise RegistryError(f"{label}: artifact {target!r} file {path} does not exist")
            if PurePosixPath(target).name != Path(path).name:
                raise RegistryError(f"{label}: artifact {target!r} must keep the name of "
                                    f"{path}")


def _ensure_model(client: MlflowClient, name: str, model_tags: dict[str, str],
                  description: str) -> None:
    """Create registered model ``name``, or check that it serves the same requests and model."""
    found = [model for model in client.search_registered_models(f"name = '{name}'")
             if model.name == name]
    if not found:
        try:
            client.create_registered_model(name, tags=model_tags, description=description)
            return
        except MlflowException as exc:  # made by another registration since the search
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = [client.get_registered_model(name)]
    held = {key: found[0].tags.get(key) for key in model_tags}
    if held != model_tags:
        raise RegistryError(
            f"registry.model_name: registered model {name!r} holds versions for requests "
            f"[{held[REQUESTS_TAG] or ''}] of model source {held[MODEL_SOURCE_TAG]!r}; this run "
            f"answers requests [{model_tags[REQUESTS_TAG]}] of model source "
            f"{model_tags[MODEL_SOURCE_TAG]!r}. A registered model serves one request set and "
            "one model source: set a different registry.model_name.")


def _experiment_id(client: MlflowClient, name: str, root: Path, server: bool) -> str:
    """The experiment ``name``; a new one keeps its artifacts in ``<root>/mlartifacts``
    unless a tracking server decides."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None if server else (Path(root) / "mlartifacts" / name).resolve().as_uri()
        return client.create_experiment(name, artifact_location=location)
    if experiment.lifecycle_stage != "active":
        raise RegistryError(f"registry.model_name: MLflow experiment {name!r} is deleted; "
                            "restore it or set a different registry.model_name")
    return experiment.experiment_id


def _version_tags(record: VersionRecord) -> dict[str, str]:
    return {
        **record.tags,
        METHOD_TAG: record.method,
        SEED_TAG: str(record.seed),
        LINEAGE_TAG: record.lineage_id,
        GATE_TAG: "passed" if record.passed else "failed",
        GATE_REASONS_TAG: "; ".join(record.reasons) or "none",
        RANK_TAG: json.dumps(list(record.rank)),
    }


def version_description(record: VersionRecord, requests: Sequence[str]) -> str:
    """The one line the MLflow UI shows beside a version: method, seed, request set, and
    whether it passed the release gate, with the first reason when it did not."""
    head = (f"{record.method}, seed {record.seed}, requests "
            f"{', '.join(sorted(requests)) or 'none'}: ")
    if record.passed:
        return head + "passed the release gate (releasable)"
    more = f" (+{len(record.reasons) - 1} more)" if len(record.reasons) > 1 else ""
    first = record.reasons[0] if record.reasons else "no reason recorded"
    return head + f"held back by the release gate: {first}{more}"


def _log_weights(model_dir: Path) -> ModelInfo:
    """Log ``model_dir`` with the ``transformers`` flavour into the active run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        components = {"model": AutoModelForCausalLM.from_pretrained(model_dir),
                      "tokenizer": AutoTokenizer.from_pretrained(model_dir)}
        requirements = [f"{package}=={installed_version(package).split('+')[0]}"
                        for package in _PIP_PACKAGES]
        return mlflow.transformers.log_model(components, name=MODEL_ARTIFACT,
                                             task="text-generation",
                                             pip_requirements=requirements)
    finally:
        if bars:
            transformers_logging.enable_progress_bar()


def _create_version(client: MlflowClient, name: str, experiment_id: str, record: VersionRecord,
                    *, requests: Sequence[str], log_weights: bool, server: bool
                    ) -> ModelVersion:
    """One run for ``record`` and one model version from it."""
    tags = _version_tags(record)
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=f"{record.method}-seed{record.seed}",
                          tags={**record.tags, LINEAGE_TAG: record.lineage_id}) as run:
        mlflow.log_params(record.params)
        mlflow.log_metrics({key: value for key, value in record.metrics.items()
                            if value is not None})
        for target, path in record.artifacts.items():
            folder = str(PurePosixPath(target).parent)
            mlflow.log_artifact(str(path), artifact_path=None if folder == "." else folder)
        mlflow.log_dict(record.lineage, LINEAGE_ARTIFACT)
        model_id = None
        if log_weights:
            info = _log_weights(record.model_dir)
            source, model_id = info.model_uri, info.model_id
            tags[WEIGHTS_HASH_TAG] = artifact_sha256(source)
        else:
            folder_uri = record.model_dir.resolve().as_uri()
            files = sorted(str(path.relative_to(record.model_dir))
                           for path in record.model_dir.rglob("*") if path.is_file())
            mlflow.log_dict({"source": folder_uri, LINEAGE_TAG: record.lineage_id,
                             "files": files}, f"{MODEL_ARTIFACT}/pointer.json")
            tags[WEIGHTS_SOURCE_TAG] = folder_uri
            source = f"{run.info.artifact_uri}/{MODEL_ARTIFACT}" if server else folder_uri
        return client.create_model_version(
            name, source, run_id=run.info.run_id, tags=tags, model_id=model_id,
            description=version_description(record, requests))


def registration_lock(root: Path, name: str) -> FileLock:
    """A file lock in the project ``root`` per registered model ``name``: registrations of
    one model from this project run one at a time (registrations from other machines to a
    shared server are not covered: MLflow has no lock of its own)."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return FileLock(str(Path(root) / f".ssiuu-register-{digest}.lock"))


def _drop_orphans(client: MlflowClient, experiment_id: str, lineage_id: str) -> None:
    """Delete what an interrupted registration of ``lineage_id`` left: its runs (the
    version, made last, is missing: the caller checked), their artifacts and the models
    they logged."""
    runs = client.search_runs([experiment_id],
                              filter_string=f"tags.`{LINEAGE_TAG}` = '{lineage_id}'")
    for run in runs:
        for model in client.search_logged_models(
                [experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"):
            get_artifact_repository(model.artifact_location).delete_artifacts()
            client.delete_logged_model(model.model_id)
        get_artifact_repository(run.info.artifact_uri).delete_artifacts()
        client.delete_run(run.info.run_id)


def _by_version(aliases: dict[str, Any]) -> dict[int, list[str]]:
    """A registered model's aliases (alias -> version) as version -> sorted aliases.

    Model versions found by ``search_model_versions`` carry no aliases in the SQL store:
    the registered model's ``aliases`` are the source.
    """
    held: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        held.setdefault(int(version), []).append(alias)
    return held


def _point(client: MlflowClient, name: str, alias: str, best: _Entry | None,
           aliases: dict[str, Any]) -> None:
    """Point ``alias`` at ``best``, or remove it when there is no such version."""
    if best is not None:
        client.set_registered_model_alias(name, alias, str(best.version))
    elif alias in aliases:
        client.delete_registered_model_alias(name, alias)


def register(name: str, records: Sequence[VersionRecord], *, requests: Sequence[str],
             model_source: str, log_weights: bool, root: Path,
             description: str = "") -> list[RegisteredVersion]:
    """Register each record as a version of ``name`` (once per lineage), then move the aliases.

    A record whose ``lineage_id`` is already a version of ``name`` adds nothing and comes
    back with ``created=False``. A :class:`RegistryError` is raised, before anything is
    written, when ``name`` exists for another request set or model source. Returns one
    :class:`RegisteredVersion` per record, in order, with the aliases it holds afterwards.

    The whole registration holds :func:`registration_lock`, so two registrations of one
    lineage from this project make one version; a run that an interrupted registration left
    for a lineage without its version is deleted, with its artifacts and logged weights,
    before the lineage is registered again.
    """
    _check_records(records)
    uri = tracking_uri(root)
    server = _is_server(uri)
    model_tags = {MODEL_SOURCE_TAG: model_source, REQUESTS_TAG: ",".join(sorted(requests))}
    with registration_lock(root, name), _session(uri) as client:
        _ensure_model(client, name, model_tags, description)
        entries = {version.tags[LINEAGE_TAG]: _Entry.of(version)
                   for version in _all_versions(client, name) if LINEAGE_TAG in version.tags}
        experiment_id = None
        called: list[tuple[VersionRecord, _Entry, bool]] = []
        for record in records:
            created = record.lineage_id not in entries
            if created:
                experiment_id = experiment_id or _experiment_id(client, name, root, server)
                _drop_orphans(client, experiment_id, record.lineage_id)
                entries[record.lineage_id] = _Entry.of(_create_version(
                    client, name, experiment_id, record, requests=requests,
                    log_weights=log_weights, server=server))
            called.append((record, entries[record.lineage_id], created))
        aliases = client.get_registered_model(name).aliases
        best = min((entry for _, entry, _ in called if entry.passed),
                   key=lambda entry: entry.order, default=None)
        _point(client, name, CANDIDATE, best, aliases)
        production = min((entry for entry in entries.values() if entry.passed),
                         key=lambda entry: entry.order, default=None)
        _point(client, name, PRODUCTION, production, aliases)
        client.set_registered_model_tag(
            name, PRODUCTION_TAG,
            NO_PRODUCTION if production is None else f"version {production.version}")
        held = _by_version(client.get_registered_model(name).aliases)
    return [RegisteredVersion(name=name, version=entry.version, method=record.method,
                              seed=record.seed, passed=entry.passed, created=created,
                              aliases=tuple(held.get(entry.version, [])))
            for record, entry, created in called]


def _lineage(client: MlflowClient, run_id: str | None) -> dict | None:
    """The run's parsed ``lineage.json``; None when the run has none."""
    if run_id is None or not any(item.path == LINEAGE_ARTIFACT
                                 for item in client.list_artifacts(run_id)):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, LINEAGE_ARTIFACT, dst_path=tmp)
        return json.loads(Path(path).read_text(encoding="utf-8"))


def artifact_sha256(uri: str) -> str:
    """One hash of the files under the MLflow artifact ``uri`` (a logged model: its weights,
    tokenizer and MLmodel), downloaded into a temporary folder
    (:func:`~ssiuu.records.lineage.model_sha256`)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        return model_sha256(folder_files(Path(local)))


def registered_weights_sha256(record: Mapping[str, Any], *, root: Path) -> str | None:
    """The hash of the weights a version of :func:`read_version` registered, fetched from
    the tracking store now; None when the version points at a model folder instead
    (``registry.log_weights: false``: the lineage hashes that folder)."""
    if WEIGHTS_SOURCE_TAG in (record.get("tags") or {}) or not record.get("source"):
        return None
    with _session(tracking_uri(root)):
        return artifact_sha256(str(record["source"]))


def read_version(name: str, version: int, *, root: Path) -> dict[str, Any]:
    """Everything an auditor needs of one version: ``name, version, aliases, source, run_id,
    tags`` (the version's), the run's ``params`` and latest ``metrics``, and its ``lineage``
    (the parsed ``lineage.json``; None for a version ssiuu did not register)."""
    with _session(tracking_uri(root)) as client:
        try:
            model_version = client.get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise RegistryError(f"registered model {name!r} has no version {version}") from None
        run = client.get_run(model_version.run_id) if model_version.run_id else None
        return {
            "name": name,
            "version": int(model_version.version),
            "aliases": sorted(model_version.aliases),
            "source": model_version.source,
            "run_id": model_version.run_id,
            "tags": dict(model_version.tags),
            "params": dict(run.data.params) if run else {},
            "metrics": dict(run.data.metrics) if run else {},
            "lineage": _lineage(client, model_version.run_id),
        }


def versions_for_request(request_id: str, *, root: Path) -> list[dict[str, Any]]:
    """Every version, of every registered model, whose ``ssiuu.requests`` holds
    ``request_id``: ``{name, version, method, seed, gate, aliases}`` sorted by name, version.
    ``request_id`` must be a request id (:data:`ssiuu.config.layout.REQUEST_ID`: nothing that
    could break out of the search filter's quotes)."""
    check_request_id(request_id, "--request")
    rows = []
    with _session(tracking_uri(root)) as client:
        models = _paged(lambda token: client.search_registered_models(
            f"tags.`{REQUESTS_TAG}` LIKE '%{request_id}%'", page_token=token))
        for model in models:
            if request_id not in model.tags.get(REQUESTS_TAG, "").split(","):
                continue
            held = _by_version(model.aliases)
            for version in _all_versions(client, model.name):
                seed = version.tags.get(SEED_TAG)
                rows.append({"name": model.name, "version": int(version.version),
                             "method": version.tags.get(METHOD_TAG),
                             "seed": None if seed is None else int(seed),
                             "gate": version.tags.get(GATE_TAG),
                             "aliases": held.get(int(version.version), [])})
    return sorted(rows, key=lambda row: (row["name"], row["version"]))
