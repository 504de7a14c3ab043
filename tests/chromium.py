"""Opening a page in headless Chromium (Debian's package, which .ci/run installs)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

# On load, the page writes whether each of its images loaded into its title.
LOADED_SCRIPT = ("<script>window.addEventListener('load', () => { document.title = "
                 "JSON.stringify([...document.images].map(i => i.complete && i.naturalWidth > 0))"
                 "; });</script>")


def loaded_images(page: Path, work: Path) -> list[bool]:
    """Open ``page`` in headless Chromium; whether each of its images loaded, in order."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: .ci/run installs it (apt-get install chromium)"
    probe = page.with_name("probe.html")
    text = page.read_text(encoding="utf-8")
    assert "</body>" in text
    probe.write_text(text.replace("</body>", LOADED_SCRIPT + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={work / 'chromium-profile'}",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.DOTALL)
    assert title, f"no <title> in Chromium's DOM:\n{dom[:2000]}"
    assert title.group(1).startswith("["), f"the page's load event did not run: {title.group(1)}"
    return json.loads(html.unescape(title.group(1)))
