"""The compliance record of every unlearned model, assembled from the workspace.

For each method and seed: the params that made it, every score after unlearning and after
each attack (with the base's and the oracle's as references), its lineage (data, weights,
``dvc.lock`` entries, commit; :mod:`ssiuu.records.lineage`), the release gate's verdict
(:mod:`ssiuu.release.gate`) and the files an auditor reads (report, figures, data validation).
:mod:`ssiuu.release.registry` files it in MLflow. Ids, hashes and numbers only: no forget text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssiuu.config import layout
from ssiuu.config.params import Params
from ssiuu.config.seeds import seed_dir
from ssiuu.records.lineage import (
    build_lineage,
    canonical_sha256,
    lineage_id,
    lineage_tags,
    recorded_scores,
)
from ssiuu.records.provenance import installed_versions, read_provenance
from ssiuu.release.gate import gate_versions
from ssiuu.release.registry import VersionRecord

MAX_NAMED_REQUESTS = 3  # more request ids than this are named by count and hash
ENVIRONMENT_TAG = "ssiuu.environment"  # where the version's model was made (provenance.py)
PACKAGES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "dvc", "mlflow",
            "ssiuu")


def registered_model_name(params: Params, requests: Sequence[str]) -> str:
    """``registry.model_name``, or ``ssiuu-<model>-<request ids>``: one registered model per
    model source (the last part of a path or hub id) and request set. More than three ids
    are named by their count and a hash of the set."""
    if params.registry.model_name:
        return params.registry.model_name
    source = params.model.name.rstrip("/").split("/")[-1].split(":")[-1]
    ids = sorted(requests)
    if len(ids) > MAX_NAMED_REQUESTS:
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:8]
        ids = [f"{len(ids)}-requests-{digest}"]
    name = "-".join(["ssiuu", source, ".".join(ids)])
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else value
    return flat


def version_metrics(models: Mapping[str, Mapping[str, Any]], method: str) -> dict[str, Any]:
    """Scores of one seed's version of ``method``, the base's and the oracle's, from that
    seed's record of the summary: ``unlearned.<score>``, ``<attack>.<score>``,
    ``base.<section>.<score>``, ``oracle.<section>.<score>``."""
    sections = {section: scores for section, scores in models[method].items()
                if section != "stop"}
    metrics = flatten(sections)
    for reference in layout.REFERENCES:
        metrics.update(flatten(models[reference], f"{reference}."))
    metrics["stop.reached"] = float(models[method]["stop"]["reached"])
    return {key: value for key, value in metrics.items()
            if value is None or isinstance(value, int | float)}


def version_params(params: Params, method: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """What made the version: the method's knobs, the shared training and attack settings,
    the model, the gate, and how the unlearning run went (learning rate kept, steps)."""
    unlearn = params.unlearn
    sections = {
        "method": method,
        "model": params.model.model_dump(),
        "unlearn": {"train": unlearn.train.model_dump(), "stop": unlearn.stop.model_dump(),
                    "losses": getattr(unlearn.losses, method).model_dump()},
        "relearn": params.relearn.model_dump(),
        "gate": params.registry.gate.model_dump(),
        "run": {key: run[key] for key in ("lr", "steps", "reached") if key in run},
    }
    return flatten(sections)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a result (``"not installed"``)."""
    return {name: found or "not installed"
            for name, found in installed_versions(PACKAGES).items()}


def _artifacts() -> dict[str, Path]:
    figures = [layout.relearning_figure(key) for key in ("heldout_mcq", "heldout_logprob")]
    files = {f"report/{layout.ROBUSTNESS_REPORT.with_suffix('.html').name}":
             layout.ROBUSTNESS_REPORT.with_suffix(".html"),
             f"report/{layout.ROBUSTNESS_REPORT.name}": layout.ROBUSTNESS_REPORT,
             f"data/{layout.DATA_VALIDATION.name}": layout.DATA_VALIDATION,
             f"data/{layout.MANIFEST.name}": layout.MANIFEST}
    files.update({f"plots/{path.name}": path
                  for path in [*figures, layout.SPURIOUS_CURVES, layout.SPURIOUS_HEATMAP,
                               layout.REGULARISER_FIGURE]})
    return files


def version_stages(method: str) -> list[str]:
    """The DVC stages whose ``dvc.lock`` entries a version's record holds: the one that
    made it, the ones that scored and attacked it, and those of the base and the oracle
    its scores are read against (another method's stages are not its lineage)."""
    return [f"unlearn@{method}", f"evaluate_unlearned@{method}", f"relearn@{method}",
            *[f"evaluate@{name}" for name in layout.REFERENCES],
            *[f"relearn_reference@{name}" for name in layout.REFERENCES]]


def build_records(root: Path, params: Params, summary: Mapping[str, Any],
                  manifest: Mapping[str, Any]) -> list[VersionRecord]:
    """One record per unlearned model (method × seed) of the workspace at ``root``.

    Its lineage id covers the ``dvc.lock`` entries of :func:`version_stages`, the data, the
    weights, the gate and a hash of its scores: registering again adds a version exactly
    when something the record states has changed."""
    requests = [request["id"] for request in manifest["requests"]]
    data_files = {split: layout.split_file(split) for split in manifest["splits"]}
    packages = json.dumps(package_versions(), sort_keys=True)
    records = []
    for method in params.unlearn.methods:
        verdicts = gate_versions(summary, method, params.relearn.attacks, params.registry.gate)
        for seed in params.seeds:
            model_dir = seed_dir(layout.model_root(method), seed)
            lineage = build_lineage(root, method=method, seed=seed, requests=requests,
                                    model_dir=model_dir, data_files=data_files,
                                    stages=version_stages(method),
                                    made_by=f"unlearn@{method}")
            metrics = version_metrics(summary["per_seed"][str(seed)], method)
            lineage["gate"] = params.registry.gate.model_dump()
            lineage["scores"] = recorded_scores(metrics)
            lineage["scores_sha256"] = canonical_sha256(lineage["scores"])
            provenance = read_provenance(root / model_dir)
            verdict = verdicts[seed]
            records.append(VersionRecord(
                method=method, seed=seed, lineage_id=lineage_id(lineage),
                params=version_params(params, method, provenance.run),
                metrics=metrics,
                tags={**lineage_tags(lineage), "ssiuu.packages": packages,
                      "ssiuu.model_source": params.model.name,
                      ENVIRONMENT_TAG: json.dumps(provenance.environment, sort_keys=True)},
                lineage=lineage,
                artifacts={**_artifacts(),
                           f"provenance/{layout.PROVENANCE_NAME}":
                           model_dir / layout.PROVENANCE_NAME},
                model_dir=model_dir, passed=verdict.passed, reasons=verdict.reasons,
                rank=verdict.rank))
    return records

