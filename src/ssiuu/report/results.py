"""The results table of one profile's run, written into the documents that show it.

``python -m ssiuu.report.results PROFILE`` reads a run's ``summary.json`` (stage
``report``) and ``registry.json`` (stage ``register``) from ``--metrics`` and replaces
the block between ``<!-- results:PROFILE:start -->`` and ``<!-- results:PROFILE:end -->``
in each ``--doc`` (``docs/results.md`` by default; the README holds the default's). The
table is a function of those two files alone, so running the command again on the same
metrics gives the same documents, and a table cannot drift from the run it shows.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from ssiuu.config.errors import DataError
from ssiuu.config.layout import read_json
from ssiuu.report.tables import MIA_REPORTED, Table, fmt

COLUMNS = ("model", "forget acc", "forget MCQ", "forget log-prob", "retain acc", "utility acc",
           "privleak (Min-K%)", "stop reached", "worst held-out gap (MCQ)",
           "gate passed")
UNLEARNED = ("forget_acc", "forget_mcq", "forget_logprob", "retain_acc", "utility_acc")


def _gate_passed(registry: Mapping | None, method: str) -> str:
    """``k of n`` seeds whose version of ``method`` passed the release gate, – without one."""
    if registry is None:
        return "–"
    versions = [v for v in registry.get("versions", []) if v.get("method") == method]
    if not versions:
        return "–"
    passed = sum(v.get("gate") == "passed" for v in versions)
    return f"{passed} of {len(versions)}"


def _worst_gap(summary: Mapping, name: str, attacks: Sequence[str]) -> str:
    """The largest held-out oracle gap (MCQ, mean over seeds) over the attacks, and which."""
    gaps = {attack: summary["models"][name].get(attack, {}).get("oracle_gap_mcq")
            for attack in attacks}
    gaps = {attack: gap for attack, gap in gaps.items() if gap is not None}
    if not gaps:
        return "–"
    attack = max(gaps, key=gaps.__getitem__)
    return f"{fmt(gaps[attack], True)} ({attack})"


def results_table(summary: Mapping, registry: Mapping | None) -> str:
    """The Markdown block of one run: each model's scores after unlearning (mean ± std
    over the seeds), its membership-inference privleak, where its stop landed, its worst
    held-out oracle gap under attack, and in how many seeds the release gate passed it."""
    try:
        models, seeds = summary["models"], summary["seeds"]
        attacks = list(summary["calibration"])
    except (KeyError, TypeError) as error:
        raise DataError(f"summary: not a report summary (missing {error})") from error
    table = Table(summary)
    out = [f"Seeds {', '.join(map(str, seeds))}"
           + ("; each cell the mean ± the standard deviation over them." if len(seeds) > 1
              else "."),
           "", "| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    for name, row in models.items():
        stop = row.get("stop")
        cells = [table.cell(name, "unlearned", key) for key in UNLEARNED]
        privleak = (table.cell(name, "privacy", f"privleak_{MIA_REPORTED}", True)
                    if "privacy" in row else "–")
        where = "–" if stop is None else stop["reached_in"]
        reference = name in ("base", "oracle")
        out.append("| " + " | ".join([
            name, *cells, privleak, where,
            "–" if name == "oracle" else _worst_gap(summary, name, attacks),
            "–" if reference else _gate_passed(registry, name)]) + " |")
    return "\n".join(out)


def replace_block(text: str, profile: str, block: str, where: str) -> str:
    """``text`` with the block between the profile's two markers replaced by ``block``."""
    start, end = f"<!-- results:{profile}:start -->", f"<!-- results:{profile}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise DataError(f"{where}: needs one '{start}' line followed by one '{end}' line")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{block}\n{end}{tail}"


def write_results(profile: str, metrics: Path, docs: Sequence[Path]) -> list[Path]:
    """Write ``profile``'s table from ``metrics`` into each of ``docs`` (all checked first)."""
    summary = read_json(metrics / "summary.json")
    registry_file = metrics / "registry.json"
    registry = read_json(registry_file) if registry_file.is_file() else None
    block = results_table(summary, registry)
    texts = {}
    for doc in docs:
        try:
            texts[doc] = replace_block(doc.read_text(encoding="utf-8"), profile, block, str(doc))
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{doc}: cannot read it: {error}") from error
    for doc, text in texts.items():
        doc.write_text(text, encoding="utf-8")
    return list(texts)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m ssiuu.report.results PROFILE [--metrics DIR] [--doc F]…``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="the marker's name: default, paper, smollm2, …")
    parser.add_argument("--metrics", type=Path, default=Path("metrics"),
                        help="folder with the run's summary.json and registry.json")
    parser.add_argument("--doc", type=Path, action="append",
                        help="a document with the profile's markers (repeatable; default: "
                             "docs/results.md, and README.md for the default profile)")
    args = parser.parse_args(argv)
    docs = args.doc or [Path("docs/results.md"),
                        *([Path("README.md")] if args.profile == "default" else [])]
    try:
        written = write_results(args.profile, args.metrics, docs)
    except DataError as error:
        raise SystemExit(f"error: {error}") from error
    for doc in written:
        print(f"{doc}: results:{args.profile} written from {args.metrics}")


if __name__ == "__main__":
    main()
