"""Scaling up: several processes compute what one does (`accelerate launch`, CPU, gloo), and
a bfloat16 model trains on float32 master weights and is saved in bfloat16.

Stated tolerance: under 2 processes the unlearning stage keeps the same learning rate, stops
at the same step and reaches the same verdict as under 1; every value of its per-step curve
(forget / retain scores, loss terms, gradient norms) is within 1e-4 + 1e-3 × |value|; the
attacks' peak scores within 1e-3. The processes' sums are float sums in another order: this
is their round-off, nothing more (measured: curves agree to about 1e-7).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ssiuu.config.profiles import apply_profile
from ssiuu.workspace import copy_pipeline, free_port, isolated_env

REPO = Path(__file__).parents[1]
LAUNCH = Path(sys.executable).parent / "accelerate"
# One seed; the threshold rule with thresholds that need no oracle; attacks short.
OVERLAY = {"seeds": [0], "base": {"train": {"steps": 200}},
           "unlearn": {"train": {"max_steps": 30, "lrs": [1.0e-3]},
                       "stop": {"rule": "threshold", "thresholds": {"acc": 0.3}}},
           "relearn": {"attacks": ["harmful_30"], "train": {"lrs": [1.0e-3], "steps": 10}}}
ABS, REL = 1e-4, 1e-3
GRAD_MODES = ("first_order", "exact")
BF16_STEPS = 60  # bfloat16 matrix products are slow on a CPU without native support


def _stage(root: Path, processes: int, script: str, *args: str) -> str:
    """Run a stage in ``root`` under 1 plain process or ``accelerate launch`` of several."""
    env = {**isolated_env(), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable] if processes == 1 else [
        str(LAUNCH), "launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port())]
    done = subprocess.run([*launcher, f"stages/{script}", *args], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The tiny profile's data and seed-0 base model, in a folder of their own."""
    root = copy_pipeline(REPO, tmp_path_factory.mktemp("distributed") / "work")
    apply_profile(root / "profiles" / "tiny.yaml", root / "params.yaml")
    overlay = root.parent / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(OVERLAY))
    apply_profile(overlay, root / "params.yaml")
    for script, *args in (("check.py",), ("prepare.py",), ("tokenizer.py",),
                          ("train.py", "base")):
        _stage(root, 1, script, *args)
    return root


def _curve(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _close(one: str, two: str) -> bool:
    if one == two:
        return True
    a, b = float(one), float(two)
    return abs(a - b) <= ABS + REL * abs(a)


def _unlearn(root: Path, method: str, processes: int) -> tuple[dict, list[dict[str, str]]]:
    _stage(root, processes, "unlearn.py", method)
    metrics = json.loads((root / "metrics" / "unlearn" / f"{method}.json").read_text())
    curve = _curve(root / "plots" / "unlearn" / method / "seed_0.csv")
    shutil.rmtree(root / "models" / "unlearned" / method)
    return metrics["seeds"]["0"], curve


def test_two_processes_unlearn_as_one(workspace):
    """Ssiuu in exact mode, whose held gradient sums both ``g`` and the Hessian-vector product
    over the processes (first order sums ``g`` alone: both are checked shard by shard in
    :func:`test_the_regulariser_sums_attribution_over_the_shards`)."""
    method = "ssiuu_exact"
    one, one_curve = _unlearn(workspace, method, 1)
    two, two_curve = _unlearn(workspace, method, 2)
    assert (two["lr"], two["steps"], two["reached"]) == (one["lr"], one["steps"], True)
    assert one["steps"] > 1 and one["reg_grad_norm_median"] > 0
    assert [row["step"] for row in two_curve] == [row["step"] for row in one_curve]
    for row_one, row_two in zip(one_curve, two_curve, strict=True):
        far = {key: (row_one[key], row_two[key]) for key in row_one
               if not _close(row_one[key], row_two[key])}
        assert not far, f"step {row_one['step']}: {far}"


def test_two_processes_attack_as_one(workspace):
    metrics = workspace / "metrics" / "relearn" / "base" / "harmful_30.json"
    _stage(workspace, 1, "relearn.py", "base")
    one = json.loads(metrics.read_text())["seeds"]["0"]
    metrics.unlink()
    _stage(workspace, 2, "relearn.py", "base")
    two = json.loads(metrics.read_text())["seeds"]["0"]
    peaks = [key for key in one if key.startswith("peak_")]
    assert peaks and one["runs"][0]["final"] != one["runs"][0]["start"]
    for key in peaks:
        assert two[key] == pytest.approx(one[key], abs=1e-3), key
    assert two["runs"][0]["final"] == pytest.approx(one["runs"][0]["final"], abs=1e-3)


def _regulariser_worker(rank: int, world: int, store: str, results: str) -> None:
    """One process of :func:`test_the_regulariser_sums_attribution_over_the_shards`: both
    gradient modes in turn."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                         world_size=world)
    try:
        for grad_mode in GRAD_MODES:
            held, logs = _regulariser_step(grad_mode, rank, world)
            torch.save({"held": held, "logs": logs},
                       Path(results) / f"{grad_mode}_rank_{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _regulariser_step(grad_mode: str, rank: int = 0,
                      world: int = 1) -> tuple[list[torch.Tensor], dict[str, float]]:
    """The regulariser's held gradient at its second step, this process holding slice
    ``rank`` of ``world`` of a forget batch of 6 answers of unequal length."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ssiuu.model.logprobs import sequence_logprobs
    from ssiuu.unlearning.methods.ssiuu import AttributionRegulariser, penalised_parameters

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32,
        attn_implementation="eager")).double()
    ids = torch.randint(4, 64, (6, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    for row, answer in enumerate((2, 3, 4, 2, 5, 3)):
        labels[row, :10 - answer] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    shard = {key: torch.tensor_split(value, world)[rank] for key, value in batch.items()}
    params = penalised_parameters(model, "linear")
    regulariser = AttributionRegulariser(params, 0.5, grad_mode)
    regulariser.compute_gradient(sequence_logprobs(model, shard).exp().sum())
    with torch.no_grad():
        generator = torch.Generator().manual_seed(2)
        for param in params:
            param.add_(0.05 * torch.randn(param.shape, generator=generator,
                                          dtype=param.dtype))
    logs = regulariser.compute_gradient(sequence_logprobs(model, shard).exp().sum())
    return [held.clone() for held in regulariser.held], logs


def test_the_regulariser_sums_attribution_over_the_shards(tmp_path):
    """In both gradient modes, two processes holding half the forget batch each hold the
    whole batch's regulariser gradient."""
    torch.multiprocessing.spawn(_regulariser_worker, nprocs=2, join=True, args=(
        2, str(tmp_path / "store"), str(tmp_path)))
    for grad_mode in GRAD_MODES:
        whole_held, whole_logs = _regulariser_step(grad_mode)
        assert whole_logs["n_neg"] > 0 and whole_logs["reg"] > 0
        for rank in (0, 1):
            got = torch.load(tmp_path / f"{grad_mode}_rank_{rank}.pt", weights_only=True)
            assert got["logs"]["n_neg"] == whole_logs["n_neg"], grad_mode
            assert got["logs"]["reg"] == pytest.approx(whole_logs["reg"], rel=1e-9), grad_mode
            for held, want in zip(got["held"], whole_held, strict=True):
                assert torch.allclose(held, want, rtol=1e-9, atol=1e-14), grad_mode



def test_a_bfloat16_base_trains_in_mixed_precision_and_is_saved_in_bfloat16(workspace,
                                                                          tmp_path):
    """The same short base training in float32 and in bfloat16 (float32 master weights):
    the same loss curve, within bfloat16's rounding, and bfloat16 weights saved."""
    from safetensors import safe_open

    losses = {}
    for dtype in ("float32", "bfloat16"):
        root = shutil.copytree(workspace, tmp_path / dtype)
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["model"]["dtype"] = dtype
        params["base"]["train"]["steps"] = BF16_STEPS
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        _stage(root, 1, "train.py", "base")
        curve = _curve(root / "plots" / "train" / "base" / "seed_0.csv")
        losses[dtype] = [float(row["loss"]) for row in curve]
    with safe_open(root / "models" / "base" / "seed_0" / "model.safetensors", "pt") as weights:
        dtypes = {weights.get_tensor(name).dtype for name in weights.keys()}  # noqa: SIM118
    assert dtypes == {torch.bfloat16}
    half, full = losses["bfloat16"], losses["float32"]
    assert len(half) == len(full) and half[-1] < 0.5 * half[0]
    assert half == pytest.approx(full, rel=0.05)


def test_a_stage_records_its_start_up_load_and_save_apart(workspace, tmp_path):
    timings = tmp_path / "timings.jsonl"
    env = {**isolated_env(), "OMP_NUM_THREADS": "1", "SSIUU_TIMINGS": str(timings)}
    done = subprocess.run([sys.executable, "stages/evaluate.py", "base"], cwd=workspace,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = [json.loads(line) for line in timings.read_text().splitlines()]
    assert record["command"] == ["stages/evaluate.py", "base"]
    assert record["startup"] > 0.3 and record["load"] > 0 and record["save"] == 0
    assert record["total"] > record["startup"] + record["load"]


def test_a_lora_unlearned_model_is_its_adapter_and_is_scored_merged(workspace, tmp_path):
    root = shutil.copytree(workspace, tmp_path / "lora")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["unlearn"]["train"].update(lora={"r": 8, "alpha": 16}, lrs=[1.0e-2])
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    _stage(root, 1, "unlearn.py", "gd")
    saved = root / "models" / "unlearned" / "gd" / "seed_0"
    assert (saved / "adapter_config.json").is_file()
    assert not (saved / "model.safetensors").exists()
    run = json.loads((root / "metrics" / "unlearn" / "gd.json").read_text())["seeds"]["0"]
    assert run["reached"]
    _stage(root, 1, "evaluate.py", "gd")
    scored = json.loads((root / "metrics" / "unlearned" / "gd.json").read_text())
    assert scored["seeds"]["0"]["forget_acc"] <= 0.3
    start = _curve(root / "plots" / "unlearn" / "gd" / "seed_0.csv")[0]
    assert float(start["forget_acc"]) > 0.6  # the base it started from knew the facts
