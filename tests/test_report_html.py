"""The HTML report shows its figures wherever it is opened, checked in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from chromium import loaded_images  # noqa: E402

from ssiuu.config.errors import DataError  # noqa: E402
from ssiuu.report.document import write_report  # noqa: E402


def _figure(path: Path, color: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 0], color=color)
    fig.savefig(path)
    plt.close(fig)


def test_moved_html_report_shows_every_figure(tmp_path):
    _figure(tmp_path / "plots" / "heldout_mcq.png", "tab:blue")
    _figure(tmp_path / "plots" / "heldout_logprob.png", "tab:red")
    text = ("# Does the forgotten data come back?\n\n## Figures\n\n"
            "![Held-out MCQ](../plots/heldout_mcq.png)\n"
            "![Held-out log-prob](../plots/heldout_logprob.png)\n")
    md, page = write_report(text, tmp_path / "reports" / "robustness.md")
    assert md.read_text(encoding="utf-8") == text  # the .md keeps its relative links
    assert "../plots/" not in page.read_text(encoding="utf-8")
    assert page.read_text(encoding="utf-8").count('src="data:image/png;base64,') == 2
    elsewhere = tmp_path / "elsewhere" / "artifacts"
    elsewhere.mkdir(parents=True)
    moved = Path(shutil.move(page, elsewhere / page.name))
    assert not (elsewhere / ".." / "plots").exists()  # its relative links would now break
    assert loaded_images(moved, tmp_path) == [True, True]


def test_svg_figures_get_their_mime_type_and_remote_images_stay_links(tmp_path):
    svg = tmp_path / "plots" / "curves.svg"
    _figure(svg, "tab:green")
    text = "![curves](../plots/curves.svg)\n![logo](https://example.org/logo.png)\n"
    _, page = write_report(text, tmp_path / "reports" / "report.md")
    body = page.read_text(encoding="utf-8")
    assert 'src="data:image/svg+xml;base64,' in body
    assert 'src="https://example.org/logo.png"' in body


def test_a_missing_figure_is_named_and_nothing_is_written(tmp_path):
    _figure(tmp_path / "plots" / "present.png", "tab:blue")
    text = "![present](../plots/present.png)\n![gone](../plots/missing.png)\n"
    out = tmp_path / "reports" / "robustness.md"
    with pytest.raises(DataError, match=r"plots/missing\.png"):
        write_report(text, out)
    assert not out.exists() and not out.with_suffix(".html").exists()
