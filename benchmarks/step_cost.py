"""Cost of one unlearning step: GA, GD and NPO against the Ssiuu variant built on each
(the attribution regulariser added), in both of its gradient modes.

Two models: the default (``model.scratch`` of params.yaml) and a random Llama of
Llama-3.2-1B's shape (hidden 2048, MLP 8192, 32 query and 8 key-value heads, 16 layers;
``--large-layers`` keeps fewer of its layers where memory or time is short: every layer is
the same, so the per-layer cost ratios hold). Each row runs in a fresh process through the
real training loop: the median step time after 2 warm-up steps, tokens per second, the
model FLOP rate (6 × parameters × tokens per second: the base computation's useful work)
as a share of this device's measured matrix-multiply peak (bf16 on a GPU, float32 on the
CPU), and the peak memory (GPU: allocated; CPU: the process's resident set and its growth
over the resident set before the first step). On a GPU the models train in bfloat16
(mixed precision, float32 master weights). Targets: first-order Ssiuu at most 1.5× and exact
Ssiuu at most 3× its base method's step time, at every size.

    python benchmarks/step_cost.py                              # both models, 2 threads
    python benchmarks/step_cost.py --large-layers 1 --large-batch 16 64 --steps 5
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
ONE_B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
         "num_attention_heads": 32, "num_key_value_heads": 8}
VOCAB, PROMPT_LEN, ANSWER_LEN = 256, 14, 6
# label -> (method, its unlearn.losses knobs, the base method it is compared with)
VARIANTS = {
    "ga": ("ga", {}, "ga"),
    "ssiuu_ga first-order": ("ssiuu_ga", {"grad": "first_order"}, "ga"),
    "ssiuu_ga exact": ("ssiuu_ga", {"grad": "exact"}, "ga"),
    "gd": ("gd", {}, "gd"),
    "ssiuu first-order": ("ssiuu", {"grad": "first_order"}, "gd"),
    "ssiuu exact": ("ssiuu", {"grad": "exact"}, "gd"),
    "npo": ("npo", {}, "npo"),
    "ssiuu_npo first-order": ("ssiuu_npo", {"grad": "first_order"}, "npo"),
    "ssiuu_npo exact": ("ssiuu_npo", {"grad": "exact"}, "npo"),
}
TARGETS = {"first-order": 1.5, "exact": 3.0}


def _batch(n: int, generator: torch.Generator) -> list[dict[str, list[int]]]:
    ids = torch.randint(4, VOCAB, (n, PROMPT_LEN + ANSWER_LEN), generator=generator).tolist()
    return [{"input_ids": row, "labels": [-100] * PROMPT_LEN + row[PROMPT_LEN:]} for row in ids]


def matmul_peak(device: str, dtype: torch.dtype, size: int) -> float:
    """Measured FLOP/s of a ``size``-square matrix multiply on ``device`` in ``dtype``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    repeats = 20 if device == "cuda" else 10
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def _child(arch: dict[str, int], variant: str, steps: int, threads: int,
           batches: tuple[int, int]) -> None:
    """Run ``steps`` steps of ``variant`` and print one JSON line of measurements."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ssiuu.config.params import LossesParams, TrainParams
    from ssiuu.model.loading import use_eager_attention
    from ssiuu.model.runtime import configure
    from ssiuu.model.training import make_loader, train
    from ssiuu.unlearning.methods.objective import build_objective

    configure(threads)  # as every stage: before any tensor work
    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, max_position_embeddings=64,
                                         tie_word_embeddings=True, **arch))
    if cuda:
        model = model.to("cuda", torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    n_forget, n_retain = batches
    method, knobs, _ = VARIANTS[variant]
    objective = build_objective(method, LossesParams.model_validate({method: knobs}), model)
    if objective.needs_double_backward:
        use_eager_attention(model)
    forget = objective.prepare(model, _batch(n_forget, generator), 0, n_forget)
    loaders = {"forget": make_loader(forget, n_forget, 0, 0)}
    tokens = n_forget * (PROMPT_LEN + ANSWER_LEN)
    if objective.needs_retain:
        loaders["retain"] = make_loader(_batch(n_retain, generator), n_retain, 0, 0)
        tokens += n_retain * (PROMPT_LEN + ANSWER_LEN)
    stamps: list[float] = []

    def stamp(_step: int, _model: torch.nn.Module) -> bool:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return False

    before = psutil.Process().memory_info().rss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train(model, loaders, objective, TrainParams(steps=steps, lr=1e-4, log_every=steps),
          seed=0, should_stop=stamp, desc=variant)
    times = [b - a for a, b in zip([start, *stamps], stamps, strict=False)][2:]
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    n_params = sum(p.numel() for p in model.parameters())
    step_s = statistics.median(times)
    print(json.dumps({"step_s": step_s, "peak": peak, "growth": peak - before,
                      "tokens_per_s": tokens / step_s,
                      "model_flops": 6 * n_params * tokens / step_s, "n_params": n_params}))


def _run(arch: dict[str, int], variant: str, steps: int, threads: int,
         batches: tuple[int, int]) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(arch), variant,
                           "--steps", str(steps), "--threads", str(threads),
                           "--batches", str(batches[0]), str(batches[1])],
                          capture_output=True, text=True,
                          env={"TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin"})
    if done.returncode:
        raise RuntimeError(f"{variant}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print the step-cost table of every variant on both models."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--large-layers", type=int, default=ONE_B["num_hidden_layers"],
                        help="layers of the 1B-shape model (16: all of them)")
    parser.add_argument("--large-batch", type=int, nargs=2, metavar=("FORGET", "RETAIN"),
                        help="forget and retain sequences per step on the 1B-shape model "
                             "(default: the default model's, from params.yaml)")
    parser.add_argument("--child", nargs=2, metavar=("ARCH", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--batches", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child[0]), args.child[1], args.steps, args.threads,
               tuple(args.batches))
        return
    from ssiuu.config.params import load_params
    from ssiuu.model.runtime import configure

    configure(args.threads)
    params = load_params(REPO / "params.yaml")
    default = params.model.scratch.model_dump(exclude={"vocab_size"})  # random ids of VOCAB
    knobs = params.unlearn.train
    batches = (min(knobs.forget_batch_size, 40), min(knobs.retain_batch_size, 200))
    large = {**ONE_B, "num_hidden_layers": args.large_layers}
    large_batches = tuple(args.large_batch) if args.large_batch else batches
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU, {args.threads} threads"
    peak = matmul_peak("cuda" if cuda else "cpu", torch.bfloat16 if cuda else torch.float32,
                       8192 if cuda else 2048)
    table = Table(title=f"One unlearning step on {device}"
                        f"{', bfloat16' if cuda else ''}: median of {args.steps - 2} steps "
                        f"after 2 warm-up; matmul peak {peak / 1e12:.2f} TFLOP/s")
    for column in ("model", "params", "method", "batch", "step (ms)", "× base", "target",
                   "tokens/s", "% peak", "peak mem (MiB)", "growth (MiB)"):
        table.add_column(column, justify="left" if column in ("model", "method") else "right")
    mib = 2 ** 20
    models = (("default", default, batches),
              (f"1B shape, {args.large_layers}/16 layers", large, large_batches))
    for label, arch, sizes in models:
        rows = {variant: _run(arch, variant, args.steps, args.threads, sizes)
                for variant in VARIANTS}
        for variant, row in rows.items():
            base = rows[VARIANTS[variant][2]]
            ratio = row["step_s"] / base["step_s"]
            mode = next((m for m in TARGETS if variant.endswith(m)), None)
            target = "" if mode is None else (
                f"≤ {TARGETS[mode]:g}× {'ok' if ratio <= TARGETS[mode] else 'MISSED'}")
            table.add_row(label, f"{row['n_params'] / 1e6:.0f} M", variant,
                          f"{sizes[0]}+{sizes[1]}" if VARIANTS[variant][2] != "ga"
                          else f"{sizes[0]}",
                          f"{row['step_s'] * 1e3:.0f}", f"{ratio:.2f}", target,
                          f"{row['tokens_per_s']:.0f}", f"{100 * row['model_flops'] / peak:.1f}",
                          f"{row['peak'] / mib:.0f}", f"{row['growth'] / mib:.0f}")
    Console(width=160).print(table)
    print(f"sequences of {PROMPT_LEN + ANSWER_LEN} tokens ({ANSWER_LEN} answer tokens); batch: "
          "forget + retain sequences per step (GA has no retain batch)")


if __name__ == "__main__":
    main()
