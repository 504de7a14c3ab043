"""Cost of one unlearning step: GD against Ssiuu (GD + the attribution regulariser), with
the regulariser's first-order gradient and its exact one.

For the default model (``model.scratch`` of params.yaml) and a larger random Llama, each
method runs in its own fresh process through the real training loop; the table gives the
median step time after warm-up and the process's peak resident memory (absolute, and the
growth over the resident memory before the first step). Targets: first-order Ssiuu at
most 1.5× GD's step time and 1.3× its peak memory; exact Ssiuu (eager attention, a
Hessian–vector product more) at most 3× GD's step time and 1.5× its peak memory.

    python benchmarks/step_cost.py
    python benchmarks/step_cost.py --steps 12 --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
LARGER = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 8,
          "num_attention_heads": 8, "num_key_value_heads": 8}
VOCAB, PROMPT_LEN, ANSWER_LEN = 256, 14, 6
# The rows: a label -> the method and its unlearn.losses knobs.
VARIANTS = {"gd": ("gd", {}), "ssiuu first-order": ("ssiuu", {"grad": "first_order"}),
            "ssiuu exact": ("ssiuu", {"grad": "exact"})}


def _batch(n: int, generator: torch.Generator) -> list[dict[str, list[int]]]:
    ids = torch.randint(4, VOCAB, (n, PROMPT_LEN + ANSWER_LEN), generator=generator).tolist()
    return [{"input_ids": row, "labels": [-100] * PROMPT_LEN + row[PROMPT_LEN:]} for row in ids]


def _child(arch: dict[str, int], variant: str, steps: int, threads: int) -> None:
    """Run ``steps`` steps of ``variant`` and print one JSON line of measurements."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ssiuu.methods.objective import build_objective
    from ssiuu.models import use_eager_attention
    from ssiuu.params import LossesParams, TrainParams, load_params
    from ssiuu.runtime import configure
    from ssiuu.training import make_loader, train

    configure(threads)  # as every stage: before any tensor work
    params = load_params(REPO / "params.yaml")
    knobs = params.unlearn.train
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, max_position_embeddings=64,
                                         tie_word_embeddings=True, **arch))
    generator = torch.Generator().manual_seed(0)
    n_forget = min(knobs.forget_batch_size, 40)
    n_retain = min(knobs.retain_batch_size, 200)
    loaders = {"forget": make_loader(_batch(n_forget, generator), n_forget, 0, 0),
               "retain": make_loader(_batch(n_retain, generator), n_retain, 0, 0)}
    method, knobs = VARIANTS[variant]
    objective = build_objective(method, LossesParams.model_validate({method: knobs}), model)
    if objective.needs_double_backward:
        use_eager_attention(model)
    stamps: list[float] = []

    def stamp(_step: int, _model: torch.nn.Module) -> bool:
        stamps.append(time.perf_counter())
        return False

    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    train(model, loaders, objective, TrainParams(steps=steps, lr=1e-4, log_every=steps),
          seed=0, should_stop=stamp, desc=variant)
    times = [b - a for a, b in zip([start, *stamps], stamps, strict=False)][2:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"step_s": statistics.median(times), "peak": peak,
                      "growth": peak - before, "n_forget": n_forget, "n_retain": n_retain,
                      "n_params": sum(p.numel() for p in model.parameters())}))


def _run(arch: dict[str, int], variant: str, steps: int, threads: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(arch), variant,
                           "--steps", str(steps), "--threads", str(threads)],
                          capture_output=True, text=True, check=True,
                          env={"TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print the table of GD vs Ssiuu (both gradients) step cost for both model sizes."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("ARCH", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child[0]), args.child[1], args.steps, args.threads)
        return
    from ssiuu.params import load_params

    default = load_params(REPO / "params.yaml").model.scratch.model_dump(
        exclude={"vocab_size"})  # the batches are random ids of a vocabulary of VOCAB
    table = Table(title=f"One unlearning step, {args.threads} threads, median of "
                        f"{args.steps - 2} steps after 2 warm-up")
    for column in ("model", "params", "method", "step (ms)", "peak RSS (MiB)",
                   "growth (MiB)", "time ×GD", "peak ×GD", "growth ×GD"):
        table.add_column(column, justify="right" if column != "method" else "left")
    mib = 2 ** 20
    for label, arch in (("default", default), ("larger", LARGER)):
        rows = {variant: _run(arch, variant, args.steps, args.threads) for variant in VARIANTS}
        gd = rows["gd"]
        for variant, row in rows.items():
            table.add_row(label, f"{row['n_params'] / 1e6:.1f} M", variant,
                          f"{row['step_s'] * 1e3:.0f}", f"{row['peak'] / mib:.0f}",
                          f"{row['growth'] / mib:.0f}", f"{row['step_s'] / gd['step_s']:.2f}",
                          f"{row['peak'] / gd['peak']:.2f}",
                          f"{row['growth'] / gd['growth']:.2f}")
    Console(width=140).print(table)
    print(f"batches: forget {gd['n_forget']}, retain {gd['n_retain']} sequences of "
          f"{PROMPT_LEN + ANSWER_LEN} tokens ({ANSWER_LEN} answer tokens)")


if __name__ == "__main__":
    main()
