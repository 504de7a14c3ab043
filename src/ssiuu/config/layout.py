"""Where every artefact of the pipeline lives, relative to the project root.

One place for the tree that ``dvc.yaml`` declares: stages write here, and later stages,
the report and the registry read here instead of rebuilding each other's path strings.
Seed ``s`` of a per-seed artefact is the folder ``seed_<s>`` of its root
(:func:`ssiuu.config.seeds.seed_dir`). No torch import: the registry and the CLI use it too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ssiuu.config.errors import DataError

REFERENCES = ("base", "oracle")  # the models the unlearned ones are measured against

PREPARED = Path("data/prepared")
MANIFEST = PREPARED / "manifest.json"
REQUESTS = Path("data/requests")
TOKENIZER = Path("models/tokenizer")
PRETRAINED = Path("models/pretrained")  # model.name converted once, in model.dtype
DATA_VALIDATION = Path("reports/data_validation.json")
SUMMARY = Path("metrics/summary.json")
REGISTRY = Path("metrics/registry.json")
ROBUSTNESS_REPORT = Path("reports/robustness.md")
CERTIFICATES = Path("reports/requests")
SPURIOUS_CURVES = Path("plots/spurious_curves.png")
SPURIOUS_HEATMAP = Path("plots/spurious_heatmap.png")
REGULARISER_FIGURE = Path("plots/regulariser_ratio.png")
PROVENANCE_NAME = "provenance.json"


REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
REQUEST_ID_RULE = ("1-64 letters, digits, '.', '_' or '-', starting with a letter or a digit "
                   "(it names the request's files)")


def check_request_id(value: str, where: str) -> str:
    """``value`` if it is a valid request id (:data:`REQUEST_ID`), else a :class:`DataError`
    naming ``where`` (a file and field, or a command-line option)."""
    if not REQUEST_ID.fullmatch(value):
        raise DataError(f"{where}: {value[:80]!r} is not a request id: {REQUEST_ID_RULE}")
    return value


def split_file(split: str) -> Path:
    """The prepared JSONL file of ``split`` (forget, retain, utility or benign)."""
    return PREPARED / f"{split}.jsonl"


def model_root(name: str) -> Path:
    """The folder holding every seed of model ``name``: a reference or an unlearning method."""
    return Path("models") / name if name in REFERENCES else Path("models/unlearned") / name


def attacked_root(attack: str, name: str) -> Path:
    """The folder holding, per seed, the provenance of ``name`` attacked with ``attack``."""
    return Path("models/attacked") / name / attack


def attribution_file(name: str, seed: int) -> Path:
    """Neuron attributions of seed ``seed`` of model ``name`` on the forget set."""
    return Path("models/attribution") / name / f"seed_{seed}.pt"


def training_metrics(role: str) -> Path:
    """Training summary (steps, final loss) of the base or the oracle."""
    return Path("metrics") / f"train_{role}.json"


def evaluation_metrics(name: str) -> Path:
    """Scores of model ``name`` (every seed) on the forget, retain and utility sets."""
    folder = Path("metrics") if name in REFERENCES else Path("metrics/unlearned")
    return folder / f"{name}.json"


def unlearning_metrics(method: str) -> Path:
    """Where unlearning with ``method`` stopped, per seed."""
    return Path("metrics/unlearn") / f"{method}.json"


def diagnosis_metrics(method: str) -> Path:
    """The erase-or-hide diagnosis (D+ / D−) of ``method``."""
    return Path("metrics/diagnose") / f"{method}.json"


def relearn_metrics(attack: str, name: str) -> Path:
    """Peak scores of model ``name`` under ``attack``."""
    return Path("metrics/relearn") / name / f"{attack}.json"


def headline_metrics(name: str) -> Path:
    """The narrow per-model row that ``dvc metrics show`` lists."""
    return Path("metrics/headline") / f"{name}.json"


def training_curve(role: str, seed: int) -> Path:
    """Loss per step of the base or oracle training of seed ``seed``."""
    return Path("plots/train") / role / f"seed_{seed}.csv"


def unlearning_curve(method: str, seed: int) -> Path:
    """Forget / retain scores and loss terms per unlearning step."""
    return Path("plots/unlearn") / method / f"seed_{seed}.csv"


def diagnosis_curve(method: str) -> Path:
    """Top-m cumulative D+ and D− of ``method`` (mean over seeds)."""
    return Path("plots/diagnose") / f"{method}.csv"


def diagnosis_sites(method: str) -> Path:
    """D+ and D− per (layer, module) of ``method`` (mean over seeds)."""
    return Path("plots/diagnose_sites") / f"{method}.csv"


def relearning_facts(attack: str, name: str, seed: int) -> Path:
    """Each held-out fact's scores per step and strength of model ``name`` (seed ``seed``)
    under ``attack``: what the paired comparison resamples."""
    return Path("metrics/relearn_facts") / name / attack / f"seed_{seed}.json"


def relearning_curve(attack: str, name: str, seed: int, lr: float) -> Path:
    """Scores per step of model ``name`` (seed ``seed``) under ``attack`` at ``lr``."""
    return Path("plots/relearn") / name / attack / f"seed_{seed}_lr_{lr:g}.csv"


def relearning_figure(key: str) -> Path:
    """The figure of ``key`` (heldout_mcq, heldout_logprob) along every attack."""
    return Path("plots") / f"relearning_{key}.png"


def certificate(request_id: str) -> Path:
    """The plain-language certificate of one deletion request; an id that is not a request
    id (:data:`REQUEST_ID`: no path separator, no ``..``) is a
    :class:`~ssiuu.config.errors.DataError`, so the path never leaves ``reports/requests/``."""
    check_request_id(request_id, f"{CERTIFICATES}: certificate of request")
    return CERTIFICATES / f"{request_id}.md"


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON (keys in insertion order), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_json(path: str | Path) -> Any:
    """Read a JSON artefact, or raise :class:`~ssiuu.config.errors.DataError` naming the missing
    file and how to make it, or the file that is not readable JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (run `dvc repro` for the stage that writes it)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable JSON file: {error}") from error
