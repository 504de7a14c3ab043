"""Where a stage's time goes: start-up (the interpreter and its imports), loading and
saving models, and the rest (its computation).

Recorded only when the environment variable ``SSIUU_TIMINGS`` names a file
(``benchmarks/pipeline.py`` sets it): each stage process appends one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Literal

TIMINGS_ENV = "SSIUU_TIMINGS"
_SPENT = {"load": 0.0, "save": 0.0}


@contextlib.contextmanager
def timed(phase: Literal["load", "save"]) -> Iterator[None]:
    """Add the time spent inside the block to this process's ``phase`` total."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _SPENT[phase] += time.perf_counter() - start


def record(command: Sequence[str], main_started: float) -> None:
    """Append this process's split to the ``SSIUU_TIMINGS`` file, if one is named:
    ``startup`` (process creation to ``main_started``, a ``time.time()``), ``load``,
    ``save`` and ``total`` seconds."""
    path = os.environ.get(TIMINGS_ENV)
    if not path:
        return
    import psutil

    created = psutil.Process().create_time()
    line = {"command": list(command), "startup": main_started - created,
            "total": time.time() - created, **_SPENT}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
