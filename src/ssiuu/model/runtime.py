"""What every stage does before its work: offline settings, threads, error reporting."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from ssiuu.config.errors import SsiuuError
from ssiuu.model import timing

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


_SETTINGS = {"gradient_checkpointing": False}  # set by configure(), per process


def offline_defaults() -> None:
    """Default to offline hubs; a user may override each variable."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def configure(num_threads: int, gradient_checkpointing: bool = False) -> None:
    """:func:`offline_defaults`, flush subnormal floats to zero, fix torch's threads, and
    whether training recomputes activations (:func:`gradient_checkpointing`).

    Call it before any tensor work: the flag is per thread, and only threads started after
    it (torch's and the BLAS library's pools) inherit it. Subnormal floats (below about
    1.2e-38 in float32) change no score, but x86 arithmetic on them is many times slower,
    and unlearning drives answer probabilities there: the exact regulariser gradient's
    Hessian–vector products of them made an exact step on the default model grow from
    2.6 s to 6.7 s over 6 steps, against 0.95 s flushed (1 thread, a busy machine).
    """
    offline_defaults()
    import torch

    torch.set_flush_denormal(True)
    torch.set_num_threads(num_threads)
    _SETTINGS["gradient_checkpointing"] = gradient_checkpointing


def gradient_checkpointing() -> bool:
    """Whether this process's training recomputes each block's activations in the backward
    pass instead of keeping them (``runtime.gradient_checkpointing``: less memory, about
    a third more compute, the same gradients)."""
    return _SETTINGS["gradient_checkpointing"]


def uses_cpu() -> bool:
    """Whether Accelerate must run on the CPU (no GPU here): then ``accelerate launch
    --multi_gpu`` (or ``torchrun``) starts CPU processes that talk through gloo."""
    import torch

    return not torch.cuda.is_available()


def device() -> str:
    """This process's device: under ``accelerate launch`` the GPU of its local rank,
    otherwise the first GPU if there is one; else the CPU."""
    from accelerate import PartialState

    return str(PartialState(cpu=uses_cpu()).device)


def is_main_process() -> bool:
    """False on every process but the first under ``accelerate launch``: only the first
    writes a stage's outputs (every process computes the same ones)."""
    from accelerate import PartialState

    return PartialState(cpu=uses_cpu()).is_main_process


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; an :class:`SsiuuError` prints its message and exits 2.
    With ``SSIUU_TIMINGS`` set, the stage's time split is recorded
    (:mod:`ssiuu.model.timing`)."""
    started = time.time()
    try:
        main()
    except SsiuuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    timing.record(sys.argv, started)
