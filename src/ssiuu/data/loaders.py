"""Loading the facts: the embedded generator, user JSONL files or a Hugging Face dataset.

Each loader returns rows in the record schema of :mod:`ssiuu.data.records`. Fields a user
row lacks stay ``None`` so that validation can name the field and the rows' ids; rows
without distractors get them once the facts are split (:mod:`ssiuu.data.distractors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssiuu.config.errors import DataError
from ssiuu.config.params import DataParams, FieldMap
from ssiuu.data import generator
from ssiuu.data.records import Record, read_jsonl


@dataclass(frozen=True)
class LoadedData:
    """Facts about people, utility and benign rows, and where each split comes from.

    ``facts`` are split into forget / retain by the deletion requests, unless the source
    gives those splits itself (``given_splits``). ``holdout`` holds facts about people no
    model trains on, the non-members of membership inference (``None``: the source has
    none, and membership is not measured); ``stop`` facts about more such people, the
    reference of the unlearning stop, which no evaluation reads (``None``: the source has
    none, and only a threshold stop can run). ``general`` holds general facts trained on
    and never evaluated (the generator's unless the user gives them). ``sources`` names
    the origin of each split (forget, retain, utility, general, benign, holdout, stop) for
    error messages and records.
    """

    facts: list[Record]
    utility: list[Record]
    general: list[Record]
    benign: list[Record]
    sources: dict[str, str]
    given_splits: dict[str, list[Record]] | None = None
    holdout: list[Record] | None = None
    stop: list[Record] | None = None


def _text(value: Any, origin: str, number: int, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | bool):
        return str(value)
    raise DataError(f"{origin} row {number}: field '{field}' must be text or a number, "
                    f"not {type(value).__name__}")


def map_fields(rows: list[dict[str, Any]], fields: FieldMap, origin: str) -> list[Record]:
    """Rename a user data set's columns to ours; ids default to ``<origin>-<row number>``.

    A field a row lacks stays absent, so validation can name it.
    """
    mapped: list[Record] = []
    for number, row in enumerate(rows, start=1):
        given_id = row.get(fields.id) if fields.id else None
        record: Record = {"id": _text(given_id, origin, number, str(fields.id))
                          if given_id is not None else f"{origin}-{number}"}
        for ours, theirs in (("subject", fields.subject), ("attribute", fields.attribute),
                             ("question", fields.question), ("answer", fields.answer)):
            if theirs is not None and theirs in row:
                record[ours] = _text(row[theirs], origin, number, theirs)
        distractors = row.get(fields.distractors) if fields.distractors else None
        if isinstance(distractors, list) and distractors:
            record["distractors"] = [str(v) for v in distractors]
        mapped.append(record)
    return mapped


def _load_generated(params: DataParams) -> LoadedData:
    gen = params.generator
    origin = f"generator(seed={gen.seed})"
    return LoadedData(
        facts=generator.generate_people_facts(gen),
        utility=generator.generate_utility(gen),
        general=generator.generate_general(gen),
        benign=generator.generate_benign(gen),
        sources=dict.fromkeys(("forget", "retain", "utility", "general", "benign", "holdout",
                               "stop"), origin),
        holdout=generator.generate_holdout_facts(gen) if gen.n_holdout_people else None,
        stop=generator.generate_stop_facts(gen) if gen.n_stop_people else None,
    )


def _load_jsonl(params: DataParams) -> LoadedData:
    src = params.jsonl
    assert src is not None
    default = _load_generated(params)

    def read(path: str) -> list[Record]:
        return map_fields(read_jsonl(path), src.fields, Path(path).stem)

    given = None
    if src.facts is not None:
        facts = read(src.facts)
        sources = {"forget": src.facts, "retain": src.facts}
    else:
        assert src.forget is not None and src.retain is not None
        given = {"forget": read(src.forget), "retain": read(src.retain)}
        facts = given["forget"] + given["retain"]
        sources = {"forget": src.forget, "retain": src.retain}
    utility = read(src.utility) if src.utility else default.utility
    general = read(src.general) if src.general else default.general
    benign = read(src.benign) if src.benign else default.benign
    return LoadedData(
        facts=facts,
        utility=utility,
        general=general,
        benign=[{**row, "distractors": []} for row in benign],
        sources={**sources,
                 "utility": src.utility or default.sources["utility"],
                 "general": src.general or default.sources["general"],
                 "benign": src.benign or default.sources["benign"],
                 **({"holdout": src.holdout} if src.holdout else {}),
                 **({"stop": src.stop} if src.stop else {})},
        given_splits=given,
        holdout=read(src.holdout) if src.holdout else None,
        stop=read(src.stop) if src.stop else None,
    )


def _load_hf(params: DataParams) -> LoadedData:
    src = params.hf
    assert src is not None
    import datasets

    try:
        dataset = datasets.load_dataset(src.name, src.config, split=src.split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for "not found"
        raise DataError(  # the exception text is left out: it may quote the data
            f"params.yaml: data.hf.name: cannot load dataset {src.name!r} "
            f"(config {src.config!r}, split {src.split!r}): {type(exc).__name__}"
        ) from None
    missing = [f for f in (src.fields.question, src.fields.answer, src.fields.subject)
               if f not in dataset.column_names]
    if missing:
        raise DataError(
            f"dataset {src.name!r}: missing column(s) {missing} named in data.hf.fields "
            f"(has {dataset.column_names})"
        )
    facts = map_fields(list(dataset), src.fields, "hf")
    default = _load_generated(params)
    origin = f"hf:{src.name}/{src.split}"
    return LoadedData(facts, default.utility, default.general, default.benign,
                      {**default.sources, "forget": origin, "retain": origin})


def load_data(params: DataParams) -> LoadedData:
    """Load the facts, utility and benign rows named by ``params.data``."""
    loaders = {"generated": _load_generated, "jsonl": _load_jsonl, "hf": _load_hf}
    return loaders[params.source](params)
