"""Fingerprints of the inputs that ``dvc.yaml`` cannot list: a user's files and model.

A user's data files (``data.jsonl.*``, a local ``data.hf.name``) and model
(``model.name``: a local folder, a package that ships weights, a cached hub model) are
named by params that may be null, so DVC cannot template them into a stage's deps. The
``check`` stage runs on every ``dvc repro``, hashes them here, and writes one small JSON
file per kind; ``prepare`` depends on the data fingerprint and the stages that load the
model on the model fingerprint. Editing an input changes its fingerprint, so exactly the
stages that read it rerun; an unchanged input leaves the file byte-identical and nothing
reruns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssiuu.config.errors import DataError
from ssiuu.config.params import DataParams, ModelParams
from ssiuu.config.sources import SCRATCH, resolve_model_source
from ssiuu.data.records import sha256_file
from ssiuu.data.requests import read_requests

DATA_FINGERPRINT = "data/inputs/data.json"
MODEL_FINGERPRINT = "data/inputs/model.json"


def _hash_tree(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder, keyed by relative path.

    Hidden files and ``__pycache__`` (caches, not content) are left out.
    """
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {str(file.relative_to(path)): sha256_file(file)
            for file in sorted(path.rglob("*"))
            if file.is_file() and not any(part.startswith(".") or part == "__pycache__"
                                          for part in file.relative_to(path).parts)}


JSONL_FIELDS = ("facts", "forget", "retain", "utility", "general", "benign", "holdout", "stop")


def _data_file(path: Path, param: str) -> Path:
    """``path`` if it is a non-empty regular file (a link to one counts), else a
    :class:`DataError` naming ``param`` and what ``path`` is instead."""
    if not path.exists():
        raise DataError(f"params.yaml: {param}: {path}: file not found")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise DataError(f"params.yaml: {param}: {path}: {kind}, not a data file")
    if path.stat().st_size == 0:
        raise DataError(f"params.yaml: {param}: {path}: empty file")
    return path


def check_inputs(data: DataParams, model: ModelParams) -> None:
    """Every path the params name, checked for kind and content before any stage runs (the
    ``check`` stage and ``ssiuu check``): each ``data.jsonl.*`` file a non-empty regular
    file; a local ``data.hf.name`` a non-empty folder or file; a local ``model.name`` a
    folder with a ``config.json`` (or the ``model.gguf_file`` it names). A
    :class:`DataError` names the param and the path. The deletion requests in
    ``data.requests_dir`` are read too (:func:`~ssiuu.data.requests.read_requests`: a bad
    id, a date in the future, a subject named twice), so ``prepare`` never starts, and
    empties ``data/prepared/``, on a request it will refuse."""
    read_requests(data.requests_dir, required=False)
    if data.source == "jsonl" and data.jsonl is not None:
        for field in JSONL_FIELDS:
            path = getattr(data.jsonl, field)
            if path is not None:
                _data_file(Path(path), f"data.jsonl.{field}")
    if data.source == "hf" and data.hf is not None and Path(data.hf.name).is_dir() \
            and not any(Path(data.hf.name).iterdir()):
        raise DataError(f"params.yaml: data.hf.name: {data.hf.name}: empty folder")
    if model.name == SCRATCH:
        return
    source = Path(resolve_model_source(model.name))
    if source.exists() and not source.is_dir():
        raise DataError(f"params.yaml: model.name: {source}: a file, not a model folder")
    if source.is_dir():
        needed = model.gguf_file or "config.json"
        if not (source / needed).is_file():
            raise DataError(f"params.yaml: model.name: {source}: no {needed} in the folder "
                            "(a model folder as save_pretrained writes it, or set "
                            "model.gguf_file)")


def data_fingerprint(params: DataParams) -> dict[str, Any]:
    """The sha256 of every user data file ``params`` names (none for generated data).

    A named file that is not one (:func:`check_inputs`) is a :class:`DataError` naming
    the param.
    """
    files: dict[str, dict[str, str]] = {}
    if params.source == "jsonl" and params.jsonl is not None:
        for field in JSONL_FIELDS:
            path = getattr(params.jsonl, field)
            if path is None:
                continue
            _data_file(Path(path), f"data.jsonl.{field}")
            files[f"data.jsonl.{field}"] = {path: sha256_file(path)}
    elif params.source == "hf" and params.hf is not None:
        local = Path(params.hf.name)
        if local.exists():
            files["data.hf.name"] = _hash_tree(local)
        else:
            files["data.hf.name"] = {"hub": params.hf.name,
                                     "revision": _hub_revision(params.hf.name, "dataset")}
    return {"source": params.source, "files": files}


def model_fingerprint(params: ModelParams) -> dict[str, Any]:
    """The sha256 of every file of the model ``params.name`` points at.

    ``scratch`` has no file (it is built from params); a hub id records the cached
    snapshot's revision. An unknown name fails here, naming ``model.name``.
    """
    source = resolve_model_source(params.name)
    if params.name == SCRATCH:
        return {"name": params.name, "files": {}}
    if Path(source).is_dir():
        files = _hash_tree(Path(source))
        if params.gguf_file is not None and params.gguf_file not in files:
            raise DataError(f"params.yaml: model.gguf_file: {params.gguf_file!r} is not a "
                            f"file of {source}")
        return {"name": params.name, "files": files}
    return {"name": params.name, "revision": _hub_revision(params.name, "model")}


def _hub_revision(repo_id: str, repo_type: str) -> str | None:
    """The commit of the locally cached snapshot of a hub repository, if there is one."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type,
                                      local_files_only=True)).name
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def write_fingerprint(fingerprint: dict[str, Any], path: str | Path) -> Path:
    """Write a fingerprint as sorted JSON, so an unchanged input gives identical bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
