"""The report as one document: the Markdown assembled from its parts, and the same as a
standalone HTML page with its figures embedded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ssiuu.config.params import GateParams
from ssiuu.report.comparisons import paired_lines, worst_case_lines
from ssiuu.report.readings import READINGS, verdict_lines
from ssiuu.report.tables import (
    MIA_ATTACKS,
    MIA_REPORTED,
    Table,
    label,
    missed_footnotes,
    missed_stops,
    privacy_lines,
    regulariser_lines,
    stop_lines,
    stop_rule_lines,
)


def robustness_markdown(summary: Mapping, methods: Sequence[str], attacks: Sequence[str],
                        figures: Mapping[str, str],
                        regularisers: Mapping[str, Mapping] | None = None,
                        retain_tolerance: float = 0.02, gate: GateParams | None = None) -> str:
    """The audit report in Markdown: what each attack brought back, per method, against
    the oracle (mean ± standard deviation over the summary's seeds), with the figures
    (paths relative to the report) and how to read each score. A method that did not reach
    its unlearning stop in some seed is marked † in every table, footnoted, and left out of
    the verdict's comparisons. ``regularisers`` (each regularised method's ``lam`` and
    ``grad``) adds the table of the regulariser's strength; ``retain_tolerance`` is how far
    below its base method's retain a regularised method's may sit and still count as
    matched in the worst-case comparison; ``gate`` (``registry.gate``) adds, per attack, the
    seeds in which the release gate finds each method's knowledge come back, by its rule."""
    rows, table = summary["models"], Table(summary)
    seeds = summary["seeds"]
    names = ["base", "oracle", *methods]
    missed = missed_stops(summary, methods)
    oracle, base = rows["oracle"]["unlearned"], rows["base"]["unlearned"]
    out = ["# Does the forgotten data come back?", "",
           f"Seeds: {', '.join(map(str, seeds))}; "
           + ("every cell is the mean ± the standard deviation across them." if len(seeds) > 1
              else "one seed is not a result: differences below seed-to-seed noise are not "
                   "evidence either way."), "",
           "## After unlearning", "",
           "| model | forget acc | forget MCQ | forget log-prob | retain acc | utility acc |",
           "|---|---|---|---|---|---|"]
    for name in names:
        out.append("| " + " | ".join([label(name, missed), *(
            table.cell(name, "unlearned", key) for key in (
                "forget_acc", "forget_mcq", "forget_logprob", "retain_acc", "utility_acc"))])
            + " |")
    out += missed_footnotes(missed)
    out += privacy_lines(summary, table, names, missed)
    out += stop_rule_lines(summary, methods)
    out += stop_lines(summary, methods)
    out += regulariser_lines(summary, methods, regularisers or {})
    out += ["", "## After each attack", ""]
    out += verdict_lines(summary, methods, attacks, gate)
    for attack in attacks:
        counted = ", ".join(f"lr {c['lr']:g}: {' / '.join(map(str, c['counted_steps'].values()))}"
                            " steps" for c in summary["calibration"][attack])
        membership = f"privleak_{MIA_REPORTED}" in rows["oracle"][attack]
        out += ["", f"### {attack}", "", f"Counted (oracle retain ≥ "
                f"{summary['min_oracle_retain']:.2f}; per seed): {counted}.", "",
                "| model | held-out MCQ start | peak | recovery (MCQ) | oracle gap (MCQ) | "
                "held-out log-prob start | peak | oracle gap (log-prob) | held-out acc peak | "
                "retain (lowest) | attribution ρ |"
                + (f" privleak ({MIA_ATTACKS[MIA_REPORTED]}, highest AUC) |" if membership
                   else ""), "|---" * (12 if membership else 11) + "|"]
        for name in names:
            keys = [("start_mcq", False), ("heldout_mcq", False), ("recovery_mcq", True),
                    ("oracle_gap_mcq", True), ("start_logprob", False),
                    ("heldout_logprob", False), ("oracle_gap_logprob", True),
                    ("heldout_acc", False), ("retain_acc", False), ("attribution_rho", False),
                    *([(f"privleak_{MIA_REPORTED}", True)] if membership else [])]
            cells = [table.cell(name, attack, key, sign) for key, sign in keys]
            out.append("| " + " | ".join([label(name, missed), *cells]) + " |")
        out += missed_footnotes(missed)
    out += paired_lines(summary, attacks)
    out += worst_case_lines(summary, regularisers or {}, retain_tolerance)
    out += ["", "## Figures", ""]
    out += [f"![{caption}]({path})" for caption, path in figures.items()]
    values = {"oracle_mcq": oracle.get("forget_mcq", float("nan")),
              "oracle_logprob": oracle.get("forget_logprob", float("nan")),
              "base_retain": base.get("retain_acc", float("nan")),
              "base_utility": base.get("utility_acc", float("nan")),
              "min_retain": summary["min_oracle_retain"]}
    out += ["", "## How to read the scores", ""]
    out += [f"- **{name}**: {text.format(**values)}" for name, text in READINGS.items()]
    return "\n".join(out) + "\n"


def write_report(markdown_text: str, out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (.md) and the same report rendered as a standalone HTML page.

    The .md keeps its image links as written (relative to its folder). The HTML embeds every
    local image they name as a ``data:`` URI, so it shows its figures wherever it is opened
    (moved, or as an MLflow artifact). Raises DataError, before writing either file, naming a
    referenced image that does not exist or is not an image file.
    """
    import base64
    import mimetypes
    from urllib.parse import unquote, urlsplit
    from xml.etree import ElementTree

    import markdown
    from markdown.treeprocessors import Treeprocessor

    from ssiuu.config.errors import DataError

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    class EmbedImages(Treeprocessor):
        """Replace the ``src`` of each local ``<img>`` with a data URI of the file it names."""

        def run(self, root: ElementTree.Element) -> None:
            for img in root.iter("img"):
                url = urlsplit(img.get("src", ""))
                if url.scheme:
                    continue
                path = out.parent / unquote(url.path)
                if not path.is_file():
                    raise DataError(f"{out}: figure {path} does not exist")
                mime = mimetypes.guess_type(path.name)[0] or ""
                if not mime.startswith("image/"):
                    raise DataError(f"{out}: figure {path} is not an image (PNG, SVG, ...)")
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                img.set("src", f"data:{mime};base64,{data}")

    renderer = markdown.Markdown(extensions=["tables"])
    # After "unescape" (priority 0), so each src is the path as written.
    renderer.treeprocessors.register(EmbedImages(renderer), "embed_images", -10)
    body = renderer.convert(markdown_text)
    out.write_text(markdown_text, encoding="utf-8")
    html = out.with_suffix(".html")
    html.write_text("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ssiuu "
                    "robustness report</title><style>body{font-family:sans-serif;max-width:"
                    "70em;margin:auto}table{border-collapse:collapse}td,th{border:1px solid "
                    "#ccc;padding:2px 6px}img{max-width:100%}</style></head><body>\n"
                    + body + "\n</body></html>\n", encoding="utf-8")
    return out, html
