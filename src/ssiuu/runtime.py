"""What every stage does before its work: offline settings, threads, error reporting."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ssiuu.errors import SsiuuError

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def offline_defaults() -> None:
    """Default to offline hubs; a user may override each variable."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def configure(num_threads: int) -> None:
    """:func:`offline_defaults`, and fix torch's threads."""
    offline_defaults()
    import torch

    torch.set_num_threads(num_threads)


def device() -> str:
    """The device to score on: the first GPU if there is one, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; an :class:`SsiuuError` prints its message and exits 2."""
    try:
        main()
    except SsiuuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
