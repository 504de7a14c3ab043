"""docs/results.md and the README's table are written from the metrics, and stay so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ssiuu.config.errors import DataError
from ssiuu.report.results import replace_block, results_table, write_results

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {"default": ROOT / "metrics", "paper": ROOT / "docs/results/paper",
            "smollm2": ROOT / "docs/results/smollm2"}


def _recorded() -> list[str]:
    return [profile for profile, folder in PROFILES.items()
            if (folder / "summary.json").is_file()]


@pytest.mark.parametrize("profile", _recorded())
def test_the_committed_tables_are_the_committed_metrics(profile: str, tmp_path: Path) -> None:
    docs = [ROOT / "docs/results.md", *([ROOT / "README.md"] if profile == "default" else [])]
    copies = []
    for doc in docs:
        copies.append(tmp_path / doc.name)
        shutil.copyfile(doc, copies[-1])
    write_results(profile, PROFILES[profile], copies)
    for doc, copy in zip(docs, copies, strict=True):
        assert copy.read_text() == doc.read_text(), (
            f"{doc.relative_to(ROOT)} is stale: run `python -m ssiuu.report.results {profile}`")


def test_each_cell_is_the_summary_s_number() -> None:
    summary = json.loads((ROOT / "metrics/summary.json").read_text())
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")
            for line in results_table(summary, None).splitlines() if line.startswith("| ")}
    assert set(summary["models"]) <= set(rows)
    for name, row in summary["models"].items():
        mean = row["unlearned"]["forget_mcq"]
        assert rows[name][2].startswith(f"{mean:.2f}")
        assert rows[name][-1].strip(" |") == "–"  # no registry given


def test_the_gate_column_counts_passed_versions_per_method() -> None:
    summary = json.loads((ROOT / "metrics/summary.json").read_text())
    method = next(name for name in summary["models"] if name not in ("base", "oracle"))
    registry = {"versions": [{"method": method, "gate": "passed"},
                             {"method": method, "gate": "failed"}]}
    line = next(line for line in results_table(summary, registry).splitlines()
                if line.startswith(f"| {method} |"))
    assert line.endswith("| 1 of 2 |")


@pytest.mark.parametrize("text", ["no markers\n",
                                  "<!-- results:default:end -->\n<!-- results:default:start -->\n",
                                  "<!-- results:default:start -->\n<!-- results:default:start -->"
                                  "\n<!-- results:default:end -->\n"])
def test_a_document_without_one_pair_of_markers_is_named(text: str) -> None:
    with pytest.raises(DataError, match="README.md: needs one '<!-- results:default:start -->'"):
        replace_block(text, "default", "table", "README.md")


def test_a_bad_summary_fails_naming_it_and_leaves_every_document_as_it_was(
        tmp_path: Path) -> None:
    doc = tmp_path / "results.md"
    doc.write_text("a\n<!-- results:x:start -->\nold\n<!-- results:x:end -->\nb\n")
    (tmp_path / "summary.json").write_text("{not json")
    done = subprocess.run([sys.executable, "-m", "ssiuu.report.results", "x", "--metrics",
                           str(tmp_path), "--doc", str(doc)], capture_output=True, text=True)
    assert done.returncode != 0
    assert f"{tmp_path / 'summary.json'}: not a readable JSON file" in done.stderr
    assert "old" in doc.read_text()
    (tmp_path / "summary.json").write_text('{"models": {}}')
    with pytest.raises(DataError, match="summary: not a report summary"):
        write_results("x", tmp_path, [doc])


def test_a_second_document_without_markers_leaves_the_first_unwritten(tmp_path: Path) -> None:
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    first.write_text("<!-- results:default:start -->\nold\n<!-- results:default:end -->\n")
    second.write_text("nothing here\n")
    with pytest.raises(DataError, match="b.md"):
        write_results("default", ROOT / "metrics", [first, second])
    assert "old" in first.read_text()
