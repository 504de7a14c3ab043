"""Provenance: one record, one shape, in every model folder the pipeline makes.

``<model folder>/seed_<s>/provenance.json`` says what the model is (role, method, attack,
seed), what it answers (the deletion request ids), what made it (the params sections, the
sha256 of every data split it saw, the folder it started from, the floating-point
environment) and how the run went (steps, learning rate, stop, wall-clock seconds).
Wall-clock time lives here and not in the DVC metrics files, so a reproduced run leaves
``dvc metrics diff`` empty.

The environment (Python, the numeric packages' versions, the CPU model, the GPU) is recorded
because scores reproduce bit for bit on one environment, not across CPUs or library
versions (docs/method.md): ``dvc.lock`` pins data, code and params, this pins the rest.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from ssiuu.config import layout

SCHEMA = 2  # 2: the environment recorded
Role = Literal["base", "oracle", "unlearned", "attacked"]
PACKAGES = ("torch", "transformers", "accelerate", "peft", "tokenizers")  # the numerics


@dataclass(frozen=True)
class Provenance:
    """What one saved (or, for ``attacked``, scored and discarded) model came from."""

    role: Role
    seed: int
    model_source: str
    requests: list[str]
    params: dict[str, Any]
    data: dict[str, str]
    parent: str | None = None
    method: str | None = None
    attack: str | None = None
    run: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA


def _cpu_model() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), else what :mod:`platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    """The first CUDA device's name when torch sees one, else ``None``."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def installed_versions(names: Sequence[str]) -> dict[str, str | None]:
    """The installed version of each package of ``names``, ``None`` if it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """This process's floating-point environment: Python, the versions of
    :data:`PACKAGES` (``None`` if one is not installed), the OS, the CPU model and the GPU."""
    return {"python": platform.python_version(), "packages": installed_versions(PACKAGES),
            "platform": platform.platform(), "cpu": _cpu_model(), "gpu": _gpu()}


def prepared_manifest() -> dict[str, Any]:
    """The manifest ``prepare`` wrote beside the splits (request ids, split hashes)."""
    return layout.read_json(layout.MANIFEST)


def provenance_of(role: Role, seed: int, *, model_source: str, splits: Sequence[str],
                  params: Mapping[str, Any], manifest: Mapping[str, Any],
                  parent: str | Path | None = None, method: str | None = None,
                  attack: str | None = None, run: Mapping[str, Any] | None = None
                  ) -> Provenance:
    """A record for a model of ``role`` that saw ``splits`` of the prepared data, made in
    this process's :func:`environment`."""
    return Provenance(
        role=role, seed=seed, model_source=model_source,
        requests=[request["id"] for request in manifest["requests"]],
        params=dict(params),
        data={split: manifest["splits"][split]["sha256"] for split in splits},
        parent=None if parent is None else Path(parent).as_posix(),
        method=method, attack=attack, run=dict(run or {}), environment=environment())


def write_provenance(record: Provenance, folder: str | Path) -> Path:
    """Write ``record`` as ``<folder>/provenance.json``."""
    return layout.write_json(asdict(record), Path(folder) / layout.PROVENANCE_NAME)


def read_provenance(folder: str | Path) -> Provenance:
    """The record in ``<folder>/provenance.json``."""
    return Provenance(**layout.read_json(Path(folder) / layout.PROVENANCE_NAME))
