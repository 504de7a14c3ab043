"""Validation of the prepared splits with Great Expectations.

Each split gets an expectation suite (schema, non-empty, no empty answers, no duplicate
questions, well-formed distractors, question + answer short enough for ``model.max_length``)
plus cross-split rules (forget ∩ retain = ∅, every requested subject present, no forget fact
in the benign set, no forget-only answer among the retain or utility distractors, no
holdout or stop-slice subject, question or id in any other split; the stop slice, whose
multiple-choice preference the unlearning stop reads, with two distractors per fact). The
report keeps, per rule, only the rule, the column and the offending rows' **ids**, never
their text: GE's raw results echo values, so they are reduced here before anything is
written or raised. No rule carries a private value either: a cross-split rule checks a
derived column (``question_in_retain``: is this row's question one of retain's?) against
``[False]``, and the requested subjects appear only as pseudonyms (``requested-1``), so the
suites and the Data Docs built from them (:func:`validate_splits`, ``docs``) hold no
subject, question or answer of anyone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ssiuu.config.errors import ValidationFailed
from ssiuu.config.params import HOLDOUT, STOP_SLICE
from ssiuu.data.distractors import FACT_SPLITS, forget_only_answers
from ssiuu.data.records import FIELDS, Record
from ssiuu.data.requests import DeletionRequest

NEVER_SEEN = (HOLDOUT, STOP_SLICE)  # facts about people no model trains on

MAX_IDS_IN_MESSAGE = 20
MIN_EXTRA_TOKENS = 2  # every example has at least these besides its words (BOS/EOS, prompt)
FITS_RULE = "question + answer fit model.max_length"
GENERATED_SUBJECTS_HINT = (
    "the requests name people of the generated data; generated people depend on "
    "data.generator.seed and n_people (the shipped data/requests/req-0001.json names people "
    "of seed 0, n_people 60): write a request naming people of the data you generate, "
    "or keep the seed"
)


@dataclass(frozen=True)
class Rule:
    """One named rule: the GE expectation class, its kwargs and the split it applies to.

    ``derive`` (a cross-split rule): the column the rule reads is made before validation
    from ``(column, source column, values)``: whether each row's source value is one of
    ``values``, or for a ``dict`` of values, the value it maps the source value to.
    """

    name: str
    expectation: str
    kwargs: dict[str, Any]
    derive: tuple[str, str, frozenset[str] | dict[str, str]] | None = None


def _none_of(name: str, column: str, derived: str, values: Sequence[str]) -> Rule:
    """Rule ``name``: no row's ``column`` value is one of ``values``, checked as the derived
    boolean column ``derived`` being all False, so no value enters the suite."""
    return Rule(name, "ExpectColumnValuesToBeInSet", {"column": derived, "value_set": [False]},
                derive=(derived, column, frozenset(values)))


@dataclass
class RuleResult:
    """The outcome of one rule on one split, with the failing rows' ids only."""

    split: str
    source: str
    rule: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int = 0
    unexpected_ids: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class ValidationReport:
    """All rule results; ``success`` only if every rule passed."""

    results: list[RuleResult]

    @property
    def success(self) -> bool:
        """Whether every rule passed."""
        return all(result.success for result in self.results)

    def failures(self) -> list[RuleResult]:
        """The rules that failed."""
        return [result for result in self.results if not result.success]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (ids only, never row text)."""
        return {
            "success": self.success,
            "n_rules": len(self.results),
            "n_failed": len(self.failures()),
            "results": [asdict(result) for result in self.results],
        }

    def write(self, path: str | Path) -> None:
        """Write the summary as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def message(self, report_path: str | Path | None = None) -> str:
        """A readable account of every failure: split, source, rule, column, row ids."""
        where = f" (report: {report_path})" if report_path else ""
        lines = [f"data validation failed{where}:"]
        for fail in self.failures():
            column = f" on column '{fail.column}'" if fail.column else ""
            ids = fail.unexpected_ids[:MAX_IDS_IN_MESSAGE]
            more = len(fail.unexpected_ids) - len(ids)
            detail = f"; ids: {', '.join(ids)}" + (f" (+{more} more)" if more > 0 else "")
            lines.append(
                f"  {fail.split} split (source: {fail.source}): rule '{fail.rule}' "
                f"[{fail.expectation}{column}] failed"
                + (f" for {fail.unexpected_count} row(s){detail}" if ids else "")
                + (f": {fail.note}" if fail.note else "")
            )
        return "\n".join(lines)


def _frame(rows: list[Record], forget_subjects: list[str],
           forget_only: frozenset[str]) -> pd.DataFrame:
    """The rows as a frame (a column per field any row has), plus derived columns.

    A field no row has stays absent, so the schema rule reports it; derived columns exist
    only where their source columns do.
    """
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=FIELDS)
    frame = frame.astype(object).where(frame.notna(), None)
    if "question" in frame and "answer" in frame:
        frame["n_words"] = [_words(q) + _words(a)
                            for q, a in zip(frame["question"], frame["answer"], strict=True)]
    if "distractors" in frame:
        frame["n_distractors"] = [len(set(d)) if isinstance(d, list) else 0
                                  for d in frame["distractors"]]
        if "answer" in frame:
            frame["answer_in_distractors"] = [
                isinstance(d, list) and a in d
                for a, d in zip(frame["answer"], frame["distractors"], strict=True)
            ]
        frame["carries_forget_answer"] = [isinstance(d, list) and bool(forget_only & set(d))
                                          for d in frame["distractors"]]
    if "question" in frame:
        frame["mentions_forget_subject"] = [
            isinstance(q, str) and any(s in q for s in forget_subjects)
            for q in frame["question"]
        ]
    return frame


def _words(text: Any) -> int:
    """Whitespace-separated words of a text (0 for a missing one): a floor on its tokens."""
    return len(text.split()) if isinstance(text, str) else 0


def _split_rules(split: str, max_length: int) -> list[Rule]:
    with_options = (*FACT_SPLITS, STOP_SLICE)
    columns = ["id", "question", "answer"] + (["subject", "distractors"]
                                             if split in with_options else [])
    rules = [Rule(f"schema: column '{c}' present", "ExpectColumnToExist", {"column": c})
             for c in columns]
    rules += [
        Rule("non-empty split", "ExpectTableRowCountToBeBetween", {"min_value": 1}),
        Rule("every row has an id", "ExpectColumnValuesToNotBeNull", {"column": "id"}),
        Rule("unique ids", "ExpectColumnValuesToBeUnique", {"column": "id"}),
        Rule("every row has a question", "ExpectColumnValuesToNotBeNull", {"column": "question"}),
        Rule("every row has an answer", "ExpectColumnValuesToNotBeNull", {"column": "answer"}),
        Rule("no empty questions", "ExpectColumnValuesToNotMatchRegex",
             {"column": "question", "regex": r"^\s*$"}),
        Rule("no empty answers", "ExpectColumnValuesToNotMatchRegex",
             {"column": "answer", "regex": r"^\s*$"}),
        Rule("no duplicate questions", "ExpectColumnValuesToBeUnique", {"column": "question"}),
        Rule(FITS_RULE, "ExpectColumnValuesToBeBetween",
             {"column": "n_words", "max_value": max_length - MIN_EXTRA_TOKENS}),
    ]
    if split in ("forget", "retain", *NEVER_SEEN):
        rules += [
            Rule("every fact names its subject", "ExpectColumnValuesToNotBeNull",
                 {"column": "subject"}),
            Rule("no empty subjects", "ExpectColumnValuesToNotMatchRegex",
                 {"column": "subject", "regex": r"^\s*$"}),
        ]
    if split in with_options:
        rules += [
            Rule("two distinct distractors per fact", "ExpectColumnValuesToBeBetween",
                 {"column": "n_distractors", "min_value": 2, "max_value": 2}),
            Rule("distractors differ from the answer", "ExpectColumnValuesToBeInSet",
                 {"column": "answer_in_distractors", "value_set": [False]}),
        ]
    return rules


def _cross_rules(split: str, splits: dict[str, list[Record]],
                 requested: list[str]) -> list[Rule]:
    def values(name: str, key: str) -> list[str]:
        return sorted({row[key] for row in splits.get(name, []) if row.get(key) is not None})

    if split == "forget":
        pseudonyms = {subject: f"requested-{n}" for n, subject in enumerate(requested, 1)}
        return [
            _none_of("forget and retain share no question", "question", "question_in_retain",
                     values("retain", "question")),
            _none_of("forget and retain share no id", "id", "id_in_retain",
                     values("retain", "id")),
            Rule("every requested subject present", "ExpectColumnDistinctValuesToContainSet",
                 {"column": "requested_subject", "value_set": sorted(pseudonyms.values())},
                 derive=("requested_subject", "subject", pseudonyms)),
        ]
    no_forget_text = Rule("no forget-only answer among the distractors",
                          "ExpectColumnValuesToBeInSet",
                          {"column": "carries_forget_answer", "value_set": [False]})
    if split == "retain":
        return [_none_of("no requested subject in retain", "subject", "subject_requested",
                         requested), no_forget_text]
    if split == "utility":
        return [no_forget_text]
    if split == "general":
        return [no_forget_text,
                _none_of("general shares no question with utility", "question",
                         "question_in_utility", values("utility", "question"))]
    if split == "benign":
        return [
            _none_of("no forget question in benign", "question", "question_in_forget",
                     values("forget", "question")),
            Rule("no forget subject in benign", "ExpectColumnValuesToBeInSet",
                 {"column": "mentions_forget_subject", "value_set": [False]}),
        ]
    if split in NEVER_SEEN:
        others = [name for name in splits if name != split]

        def elsewhere(key: str) -> list[str]:
            return sorted({value for name in others for value in values(name, key)})

        return [_none_of(f"{split} shares no {key} with any other split", key,
                         f"{key}_elsewhere", elsewhere(key))
                for key in ("subject", "question", "id")]
    return []


def _missing_subjects_note(forget: list[Record], requests: list[DeletionRequest],
                           source: str) -> str:
    """Where each unknown requested subject is (file and index, never the name).

    Facts from the generator add a hint: its people change with its seed and size.
    """
    present = {row.get("subject") for row in forget}
    missing = [f"{request.path} subjects[{index}]"
               for request in requests
               for index, subject in enumerate(request.subjects) if subject not in present]
    if not missing:
        return ""
    note = "unknown subject(s) at " + ", ".join(missing)
    return f"{note}: {GENERATED_SUBJECTS_HINT}" if source.startswith("generator(") else note


def _fits_note(rule: Rule) -> str:
    limit = rule.kwargs["max_value"]
    return (f"question + answer have more than {limit} words, so more than "
            f"{limit + MIN_EXTRA_TOKENS} tokens (each word is at least one): "
            "shorten these rows or raise model.max_length")


def _rule_result(split: str, source: str, rule: Rule, outcome: Any, rows: list[Record],
                 requests: list[DeletionRequest]) -> RuleResult:
    """Reduce GE's result for one rule to the rule, its column and the failing rows' ids."""
    ids = [str(item.get("id")) for item in outcome.result.get("unexpected_index_list") or []
           if isinstance(item, dict)]
    note = ""
    if not outcome.success and rule.name == "every requested subject present":
        note = _missing_subjects_note(rows, requests, source)
    elif not outcome.success and rule.name == FITS_RULE:
        note = _fits_note(rule)
    elif not outcome.success and rule.expectation == "ExpectTableRowCountToBeBetween":
        note = "the split has no rows"
    return RuleResult(
        split=split, source=source, rule=rule.name, expectation=_snake(rule.expectation),
        column=rule.kwargs.get("column"), success=bool(outcome.success),
        unexpected_count=int(outcome.result.get("unexpected_count") or len(ids)),
        unexpected_ids=ids, note=note,
    )


def _with_derived(frame: pd.DataFrame, rules: list[Rule]) -> pd.DataFrame:
    """``frame`` with each rule's derived column, where its source column exists."""
    for rule in rules:
        if rule.derive is None or rule.derive[1] not in frame:
            continue
        column, source, values = rule.derive
        frame[column] = [values.get(value) if isinstance(values, dict) else value in values
                         for value in frame[source]]
    return frame


def validate_splits(splits: dict[str, list[Record]], sources: dict[str, str],
                    requests: list[DeletionRequest], *, max_length: int,
                    docs: Path | None = None) -> ValidationReport:
    """Run every rule on every split with Great Expectations and return the report.

    ``max_length`` is ``model.max_length``: a row whose question and answer have more
    words than ``max_length - MIN_EXTRA_TOKENS`` can never be encoded, so it is rejected.
    With ``docs``, the suites and each split's pass or fail per expectation are also
    rendered there as Great Expectations Data Docs (``docs/index.html``), replacing what
    was there; they show no row's values (GE's ``BOOLEAN_ONLY`` results).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    building = None
    if docs is not None:
        docs.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{docs.name}-", dir=docs.parent))
        context.add_data_docs_site(site_name="local", site_config={
            "class_name": "SiteBuilder", "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(building.resolve())}})
    try:
        results = _validate_each(context, splits, sources, requests, max_length,
                                 building is not None)
        if building is not None:
            context.build_data_docs()
            shutil.rmtree(docs, ignore_errors=True)
            building.rename(docs)
    finally:
        if building is not None and building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return ValidationReport(results)


def _validate_each(context: Any, splits: dict[str, list[Record]], sources: dict[str, str],
                   requests: list[DeletionRequest], max_length: int,
                   stored: bool) -> list[RuleResult]:
    """Each split's suite, validated; with ``stored``, also run as a validation definition
    whose values-free result the Data Docs render."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    requested = sorted({s for request in requests for s in request.subjects})
    forget_subjects = sorted({row["subject"] for row in splits.get("forget", [])
                              if row.get("subject")})
    forget_only = forget_only_answers(splits)
    datasource = context.data_sources.add_pandas("splits")
    results: list[RuleResult] = []
    for split, rows in splits.items():
        every = _split_rules(split, max_length) + _cross_rules(split, splits, requested)
        frame = _with_derived(_frame(rows, forget_subjects, forget_only), every)
        rules = [rule for rule in every
                 if rule.expectation == "ExpectColumnToExist"
                 or rule.kwargs.get("column", "") in frame or "column" not in rule.kwargs]
        suite = context.suites.add(gx.ExpectationSuite(name=f"{split}_suite"))
        for rule in rules:
            suite.add_expectation(getattr(gxe, rule.expectation)(**rule.kwargs))
        whole = datasource.add_dataframe_asset(name=split).add_batch_definition_whole_dataframe(
            "all")
        outcome = whole.get_batch(batch_parameters={"dataframe": frame}).validate(
            suite, result_format={"result_format": "COMPLETE",
                                  "unexpected_index_column_names": ["id"]})
        results += [_rule_result(split, sources.get(split, "?"), rule,
                                 _find(outcome.results, rule), rows, requests)
                    for rule in rules]
        if stored:
            context.validation_definitions.add(gx.ValidationDefinition(
                data=whole, suite=suite, name=split)).run(
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "BOOLEAN_ONLY"})
    return results


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _find(results: list[Any], rule: Rule) -> Any:
    for res in results:
        config = res.expectation_config
        if config.type == _snake(rule.expectation) and all(
            config.kwargs.get(k) == v for k, v in rule.kwargs.items()
        ):
            return res
    raise LookupError(f"no Great Expectations result for rule {rule.name!r}")


def raise_on_failure(report: ValidationReport, report_path: str | Path) -> None:
    """Raise :class:`ValidationFailed` with the report's message if any rule failed."""
    if not report.success:
        raise ValidationFailed(report.message(report_path))
