"""What a registered model version came from, and checking that it still holds.

A *lineage* is a JSON-serialisable dict recording the deletion requests a model answers,
the sha256 of each prepared data split and of every file of the model folder, the
``dvc.lock`` entries of the stages that made it and the git commit of the workspace::

    {"schema": 1, "method": "gd", "seed": 0, "requests": ["req-0001"],
     "data": {"forget": {"path": "data/prepared/forget.jsonl", "sha256": "..."}},
     "model": {"path": "models/unlearned/gd/seed_0", "files": {"config.json": "...", ...}},
     "dvc_lock": {"made_by": "unlearn@gd", "stages": {"unlearn@gd": {...}}},
     "git": {"commit": "...", "dirty": false}}

:func:`verify_lineage` re-hashes the workspace and names every file that no longer
matches. Nothing here reads forget-set text beyond hashing its bytes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from ssiuu.config.errors import DataError
from ssiuu.data.records import sha256_file

SCHEMA = 1
DVC_LOCK = "dvc.lock"
UNKNOWN_COMMIT = "unknown"
MAX_TAG_LENGTH = 5000
_COMMIT_ID = re.compile(r"[0-9a-f]{4,64}")


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no whitespace: equal data, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_sha256(value: Any) -> str:
    """The hex sha256 of :func:`canonical_json` of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def model_sha256(files: Mapping[str, str]) -> str:
    """One hash of a model folder: sha256 of its sorted ``name:sha256\\n`` lines."""
    lines = "".join(f"{name}:{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    """A parsed YAML value with only JSON types (YAML dates become ISO strings)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _read_lock_stages(root: Path) -> dict[str, Any]:
    """The ``stages`` mapping of ``root/dvc.lock``, parsed as DVC parses it (YAML 1.2)."""
    path = root / DVC_LOCK
    try:
        parsed = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{DVC_LOCK}: not found in {root} (run `dvc repro` first)") from None
    except (YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{DVC_LOCK}: not valid YAML ({type(exc).__name__})") from None
    stages = parsed.get("stages") if isinstance(parsed, Mapping) else None
    if not isinstance(stages, Mapping):
        raise DataError(f"{DVC_LOCK}: no 'stages' mapping")
    return _plain(stages)


def _relative(path: Path, root: Path) -> str:
    """``path`` (absolute or relative to ``root``) relative to ``root``, in POSIX form.

    Symlinks are not followed first, so a DVC-cache link stays a workspace path; a path
    outside ``root`` is a :class:`DataError`.
    """
    base = Path(os.path.abspath(root))
    target = Path(os.path.abspath(base / path))
    for candidate, anchor in ((target, base), (target.resolve(), base.resolve())):
        if candidate.is_relative_to(anchor):
            return candidate.relative_to(anchor).as_posix()
    raise DataError(f"{path}: not inside the workspace {root}")


def folder_files(folder: Path) -> dict[str, str]:
    """``{relative POSIX name: sha256}`` of every file under ``folder``, sorted by name."""
    names = sorted(item.relative_to(folder).as_posix()
                   for item in folder.rglob("*") if item.is_file())
    return {name: sha256_file(folder / name) for name in names}


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """Run ``git -C root args``; None when git itself is missing."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        return None


def _git_state(root: Path) -> dict[str, Any]:
    """HEAD's commit and whether tracked files differ from it; ``unknown`` outside git."""
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if head is None or head.returncode != 0:
        return {"commit": UNKNOWN_COMMIT, "dirty": False}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    dirty = status is not None and (status.returncode != 0 or bool(status.stdout.strip()))
    return {"commit": head.stdout.strip(), "dirty": dirty}


def build_lineage(root: Path, *, method: str, seed: int, requests: Sequence[str],
                  model_dir: Path, data_files: Mapping[str, Path], stages: Sequence[str],
                  made_by: str) -> dict[str, Any]:
    """The lineage of the model in ``model_dir`` (see the module docstring for its shape).

    Paths may be absolute or relative to ``root`` and must lie inside it. ``made_by`` is the
    stage that wrote the model; its ``dvc.lock`` entry is recorded along with ``stages``.
    Raises :class:`DataError` naming the file or the ``dvc.lock`` stage that is missing.
    """
    root = Path(root)
    data: dict[str, dict[str, str]] = {}
    for split in sorted(data_files):
        path = Path(data_files[split])
        relative = _relative(path, root)
        if not (root / relative).is_file():
            raise DataError(f"{relative}: data split '{split}' not found")
        data[split] = {"path": relative, "sha256": sha256_file(root / relative)}
    model_path = _relative(Path(model_dir), root)
    if not (root / model_path).is_dir():
        raise DataError(f"{model_path}: model folder not found")
    lock_stages = _read_lock_stages(root)
    recorded: dict[str, Any] = {}
    for name in dict.fromkeys([made_by, *stages]):
        if name not in lock_stages:
            raise DataError(f"{DVC_LOCK}: no stage '{name}' (run `dvc repro {name}` first)")
        recorded[name] = lock_stages[name]
    return {
        "schema": SCHEMA,
        "method": method,
        "seed": int(seed),
        "requests": sorted(set(requests)),
        "data": data,
        "model": {"path": model_path, "files": folder_files(root / model_path)},
        "dvc_lock": {"made_by": made_by, "stages": recorded},
        "git": _git_state(root),
    }


def recorded_scores(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scores as the run holds them: every metric with a value, as a float (MLflow
    stores floats and drops nothing else)."""
    return {name: float(value) for name, value in sorted(metrics.items()) if value is not None}


def head_commit(root: Path) -> str | None:
    """The commit checked out at ``root`` (None outside a git repository)."""
    found = _git(root, "rev-parse", "HEAD")
    return found.stdout.strip() if found is not None and found.returncode == 0 else None


def lineage_id(lineage: Mapping[str, Any]) -> str:
    """The sha256 of the canonical JSON of everything but ``git``.

    Two lineages with the same requests, data, weights and ``dvc.lock`` entries share an
    id even when made at different commits (a docs-only commit makes no new version).
    """
    return canonical_sha256({key: value for key, value in lineage.items() if key != "git"})


def _join_within(items: Sequence[str], limit: int) -> str:
    """Comma-joined ``items``; past ``limit`` characters, the first ones that fit and
    ``…(+N more)``."""
    joined = ",".join(items)
    if len(joined) <= limit:
        return joined
    kept: list[str] = []
    for item in items:
        rest = f"…(+{len(items) - len(kept) - 1} more)"
        if len(",".join([*kept, item, rest])) > limit:
            break
        kept.append(item)
    return ",".join([*kept, f"…(+{len(items) - len(kept)} more)"])


def lineage_tags(lineage: Mapping[str, Any]) -> dict[str, str]:
    """Flat ``ssiuu.*`` MLflow tags summarising ``lineage``, each value at most 5000 chars.

    ``ssiuu.requests`` joins the request ids with commas; if they do not fit, it keeps the
    first ids and ends with ``…(+N more)`` (the full list stays in the lineage).
    """
    made_by = lineage["dvc_lock"]["made_by"]
    tags = {
        "ssiuu.requests": _join_within(list(lineage["requests"]), MAX_TAG_LENGTH),
        "ssiuu.method": str(lineage["method"]),
        "ssiuu.seed": str(lineage["seed"]),
        **{f"ssiuu.data.{split}.sha256": entry["sha256"]
           for split, entry in sorted(lineage["data"].items())},
        "ssiuu.model.sha256": model_sha256(lineage["model"]["files"]),
        "ssiuu.model.path": str(lineage["model"]["path"]),
        "ssiuu.dvc_lock.stage": str(made_by),
        "ssiuu.dvc_lock.sha256": canonical_sha256(lineage["dvc_lock"]["stages"][made_by]),
        "ssiuu.git.commit": str(lineage["git"]["commit"]),
        "ssiuu.git.dirty": str(bool(lineage["git"]["dirty"])).lower(),
    }
    return {key: value[:MAX_TAG_LENGTH] for key, value in tags.items()}


def _short(digest: str) -> str:
    return f"{digest[:8]}…"


def _check_data(lineage: Mapping[str, Any], root: Path) -> list[str]:
    found = []
    for split in sorted(lineage["data"]):
        entry = lineage["data"][split]
        path = root / entry["path"]
        if not path.is_file():
            found.append(f"{entry['path']}: missing (recorded sha256 {_short(entry['sha256'])})")
            continue
        now = sha256_file(path)
        if now != entry["sha256"]:
            found.append(f"{entry['path']}: sha256 differs "
                         f"(recorded {_short(entry['sha256'])}, now {_short(now)})")
    return found


def _check_model(lineage: Mapping[str, Any], root: Path) -> list[str]:
    folder, recorded = lineage["model"]["path"], lineage["model"]["files"]
    if not (root / folder).is_dir():
        return [f"{folder}: model folder missing ({len(recorded)} files recorded)"]
    present = {item.relative_to(root / folder).as_posix()
               for item in (root / folder).rglob("*") if item.is_file()}
    found = []
    for name in sorted(present | set(recorded)):
        if name not in present:
            found.append(f"{folder}/{name}: missing (recorded sha256 {_short(recorded[name])})")
        elif name not in recorded:
            found.append(f"{folder}/{name}: extra file, not in the record")
        else:
            now = sha256_file(root / folder / name)
            if now != recorded[name]:
                found.append(f"{folder}/{name}: sha256 differs "
                             f"(recorded {_short(recorded[name])}, now {_short(now)})")
    return found


def _check_dvc_lock(lineage: Mapping[str, Any], root: Path) -> list[str]:
    recorded = lineage["dvc_lock"]["stages"]
    try:
        current = _read_lock_stages(root)
    except DataError as exc:
        return [str(exc)]
    found = []
    for name in sorted(recorded):
        if name not in current:
            found.append(f"{DVC_LOCK}: stage {name} missing (recorded in the lineage)")
            continue
        was, now = recorded[name], current[name]
        if canonical_json(was) != canonical_json(now):
            keys = sorted(key for key in set(was) | set(now)
                          if canonical_json(was.get(key)) != canonical_json(now.get(key)))
            found.append(f"{DVC_LOCK}: stage {name} differs from the record ({', '.join(keys)})")
    return found


def _check_git(lineage: Mapping[str, Any], root: Path) -> list[str]:
    commit = str(lineage["git"]["commit"])
    if commit == UNKNOWN_COMMIT:
        return ["git: the record has no commit (it was built outside a git repository)"]
    if not _COMMIT_ID.fullmatch(commit):
        return [f"git: recorded commit {commit[:40]!r} is not a commit id"]
    found = _git(root, "cat-file", "-e", f"{commit}^{{commit}}")
    if found is None:
        return [f"git: cannot check commit {commit[:12]} (git is not installed)"]
    if found.returncode != 0:
        return [f"git: commit {commit[:12]} not found in the repository at {root}"]
    return []


def verify_lineage(lineage: Mapping[str, Any], root: Path) -> list[str]:
    """Every way the workspace at ``root`` differs from ``lineage``; empty when verified.

    Checked in this order: the data splits, the model folder (a missing, changed or extra
    file), each recorded ``dvc.lock`` stage entry, then that the recorded git commit exists.
    Each message starts with the file it concerns (``git`` for the commit). A lineage of an
    unknown schema raises :class:`DataError`.
    """
    if lineage.get("schema") != SCHEMA:
        raise DataError(f"lineage: schema {lineage.get('schema')!r} is not supported "
                        f"(expected {SCHEMA})")
    root = Path(root)
    return (_check_data(lineage, root) + _check_model(lineage, root)
            + _check_dvc_lock(lineage, root) + _check_git(lineage, root))
