"""End to end: the real `dvc repro` on the tiny profile, in a temporary git repository."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssiuu.profiles import apply_profile
from ssiuu.workspace import copy_pipeline

REPO = Path(__file__).parents[1]

pytestmark = pytest.mark.e2e


def _run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and done.returncode:
        raise AssertionError(f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(cwd, sys.executable, "-m", "dvc", *args, check=check)


def _metrics(repo: Path, name: str) -> dict:
    return json.loads((repo / "metrics" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    repo = copy_pipeline(REPO, tmp_path_factory.mktemp("pipeline"))
    apply_profile(repo / "profiles" / "tiny.yaml", repo / "params.yaml")
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "tiny pipeline")
    _dvc(repo, "repro")
    return repo


SEEDS = ("0", "1")


def test_repro_gives_a_memorising_base_and_an_ignorant_oracle_in_every_seed(tiny_repo):
    base_file, oracle_file = _metrics(tiny_repo, "base"), _metrics(tiny_repo, "oracle")
    assert set(base_file["seeds"]) == set(oracle_file["seeds"]) == set(SEEDS)
    for seed in SEEDS:
        base, oracle = base_file["seeds"][seed], oracle_file["seeds"][seed]
        assert base["forget_acc"] >= 0.95 and base["retain_acc"] >= 0.95
        assert base["forget_mcq"] >= 0.95 and base["utility_acc"] >= 0.9
        assert oracle["forget_acc"] <= 0.1 and oracle["retain_acc"] >= 0.95
        assert oracle["forget_mcq"] <= base["forget_mcq"] - 0.3
        assert oracle["forget_logprob"] < base["forget_logprob"] - 1.0
        assert base["forget_n"] == 20
        provenance = json.loads((tiny_repo / "models" / "base" / f"seed_{seed}"
                                 / "training.json").read_text())
        assert provenance["seed"] == int(seed)
    logprobs = [oracle_file["seeds"][seed]["forget_logprob"] for seed in SEEDS]
    assert logprobs[0] != logprobs[1]  # the seeds are different models
    assert oracle_file["mean"]["forget_logprob"] == pytest.approx(sum(logprobs) / 2, abs=1e-4)
    report = json.loads((tiny_repo / "reports" / "data_validation.json").read_text())
    assert report["success"] and report["n_failed"] == 0


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_second_repro_only_rechecks_the_inputs(tiny_repo):
    status = json.loads(_dvc(tiny_repo, "status", "--json").stdout)
    assert status == {"check": ["always changed"]}
    assert _ran(_dvc(tiny_repo, "repro").stdout) == {"check"}


def _snapshot(repo: Path) -> dict[Path, bytes]:
    kept = [repo / "models" / "base", repo / "metrics", repo / "plots" / "train"]
    return {p: p.read_bytes() for root in kept for p in root.rglob("*") if p.is_file()}


def _set(raw: dict, dotted: str, value: object) -> dict:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[leaf] = value
    return raw


@pytest.mark.parametrize(("dotted", "value", "field"), [
    ("seeds", "banana", "params.yaml: seeds"),
    ("bogus_key", 1, "params.yaml: bogus_key: unknown parameter"),
    ("base.train.lr", -1.0, "params.yaml: base.train.lr"),
], ids=["wrong-type", "unknown-key", "out-of-range"])
def test_a_bad_param_fails_before_any_output_is_removed(tiny_repo, dotted, value, field):
    params = tiny_repo / "params.yaml"
    original = params.read_text()
    before = _snapshot(tiny_repo)
    params.write_text(yaml.safe_dump(_set(yaml.safe_load(original), dotted, value)))
    try:
        failed = _dvc(tiny_repo, "repro", check=False)
    finally:
        params.write_text(original)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and field in output, output[-2000:]
    assert _ran(output) == {"check"}
    assert _snapshot(tiny_repo) == before


METHODS = ["ga", "gd", "npo", "ssiuu", "ssiuu_npo"]  # the tiny profile's
# The retain accuracy a method may lose: GA has no retain term; NPO's objective trades
# more retain than GD's at the same lr (0.72 retain on the default, docs/method.md).
RETAIN_LOSS = {"gd": 0.15, "ssiuu": 0.15, "npo": 0.25, "ssiuu_npo": 0.25}


def test_every_method_unlearns_to_the_threshold_and_keeps_retain(tiny_repo):
    base_file, oracle_file = _metrics(tiny_repo, "base"), _metrics(tiny_repo, "oracle")
    for method in METHODS:
        run_file = _metrics(tiny_repo, f"unlearn/{method}")
        unlearned_file = _metrics(tiny_repo, f"unlearned/{method}")
        assert run_file["reached"], method
        for seed in SEEDS:
            run, unlearned = run_file["seeds"][seed], unlearned_file["seeds"][seed]
            base, oracle = base_file["seeds"][seed], oracle_file["seeds"][seed]
            assert run["reached"] and 0 < run["steps"] <= 40, (method, seed)
            assert run["stop_forget_acc"] == oracle["forget_acc"]  # this seed's oracle
            assert unlearned["forget_mcq"] <= 1 / 3, (method, seed)
            assert unlearned["forget_acc"] <= oracle["forget_acc"], (method, seed)
            if method in RETAIN_LOSS:
                assert unlearned["retain_acc"] >= base["retain_acc"] - RETAIN_LOSS[method], (
                    method, seed)
            curve = (tiny_repo / "plots" / "unlearn" / method / f"seed_{seed}.csv"
                     ).read_text().splitlines()
            assert curve[0].startswith("step,forget_acc")
            assert len(curve) == run["steps"] + 2
            last = _curve(tiny_repo / "plots" / "unlearn" / method / f"seed_{seed}.csv")[-1]
            for key in ("forget_acc", "forget_mcq", "forget_logprob", "retain_acc"):
                assert last[key] == pytest.approx(unlearned[key], abs=1e-3), (method, key)
        diagnosis = _metrics(tiny_repo, f"diagnose/{method}")
        assert set(diagnosis["seeds"]) == set(SEEDS)
        mean = diagnosis["mean"]
        assert mean["d_plus_top100"] >= 0 and mean["d_minus_top100"] >= 0
        assert diagnosis["verdict"] == ("hiding" if mean["d_minus_top100"]
                                        > mean["d_plus_top100"] else "erasing")
    regularised = (tiny_repo / "plots" / "unlearn" / "ssiuu" / "seed_0.csv"
                   ).read_text().splitlines()
    assert "reg" in regularised[0].split(",") and "n_neg" in regularised[0].split(",")
    for image in ("spurious_curves.png", "spurious_heatmap.png"):
        assert (tiny_repo / "plots" / image).read_bytes()[:4] == b"\x89PNG"


def _curve(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]


def _curve_file(repo: Path, attack: str, model: str, seed: str, lr: str) -> Path:
    return repo / "plots" / "relearn" / attack / model / f"seed_{seed}_lr_{lr}.csv"


def test_every_model_is_attacked_and_the_oracle_relearns_only_what_it_is_shown(tiny_repo):
    forget = [json.loads(line) for line in
              (tiny_repo / "data" / "prepared" / "forget.jsonl").read_text().splitlines()]
    for attack in ("harmful_30", "benign"):
        for model in ("base", "oracle", *METHODS):
            result_file = _metrics(tiny_repo, f"relearn/{attack}/{model}")
            for seed in SEEDS:
                result = result_file["seeds"][seed]
                assert [run["lr"] for run in result["runs"]] == [3e-4, 1e-3]
                curves = [_curve(_curve_file(tiny_repo, attack, model, seed, lr))
                          for lr in ("0.0003", "0.001")]
                for curve in curves:
                    assert [p["step"] for p in curve] == [0, 5, 10, 15, 20]
                    assert all("retain_acc" in p and "heldout_mcq" in p for p in curve)
                assert result["peak_heldout_acc"] == pytest.approx(
                    max(p["heldout_acc"] for curve in curves for p in curve[1:]), abs=1e-4)
                if attack == "harmful_30":
                    assert (result["n_injected"], result["n_heldout"]) == (6, 14)
                    assert set(result["injected_ids"]) <= {r["id"] for r in forget}
                    oracle = _metrics(tiny_repo, "relearn/harmful_30/oracle")["seeds"][seed]
                    assert result["injected_ids"] == oracle["injected_ids"]  # one split
                else:
                    assert (result["n_train"], result["n_heldout"],
                            result["n_injected"]) == (40, 20, 0)
    splits = _metrics(tiny_repo, "relearn/harmful_30/gd")["seeds"]
    assert splits["0"]["injected_ids"] != splits["1"]["injected_ids"]  # a split per seed
    strong = _metrics(tiny_repo, "relearn/harmful_30/oracle")["seeds"]["0"]["runs"][1]
    assert strong["final"]["injected_acc"] >= strong["start"]["injected_acc"] + 0.5
    base = _metrics(tiny_repo, "relearn/benign/base")["seeds"]["0"]["runs"][0]
    assert base["final"]["heldout_acc"] >= 0.9  # benign fine-tuning does not erase the facts


def test_report_calibrates_on_each_seeds_oracle_and_summarises_every_method(tiny_repo):
    summary = _metrics(tiny_repo, "summary")
    assert summary["seeds"] == [0, 1]
    assert set(summary["models"]) == {"base", "oracle", *METHODS}
    for attack in ("harmful_30", "benign"):
        for entry in summary["calibration"][attack]:
            for seed in SEEDS:
                oracle = _curve(_curve_file(tiny_repo, attack, "oracle", seed,
                                            f"{entry['lr']:g}"))
                kept = [0] + [p["step"] for p in oracle if all(
                    q["retain_acc"] >= 0.9 for q in oracle if q["step"] <= p["step"])]
                assert entry["counted_steps"][seed] == max(kept)
        for method in METHODS:
            gaps = []
            for seed in SEEDS:
                rows = summary["per_seed"][seed]
                gap = rows[method][attack]["heldout_mcq"] - rows["oracle"][attack]["heldout_mcq"]
                assert rows[method][attack]["oracle_gap_mcq"] == pytest.approx(gap)
                gaps.append(gap)
            assert summary["models"][method][attack]["oracle_gap_mcq"] == pytest.approx(
                sum(gaps) / 2, abs=1e-4)
    report = (tiny_repo / "reports" / "robustness.md").read_text()
    assert all(f"| {method} |" in report for method in METHODS)
    assert "Seeds: 0, 1;" in report and " ± " in report
    assert "<table>" in (tiny_repo / "reports" / "robustness.html").read_text()
    for image in ("relearning_heldout_mcq.png", "relearning_heldout_logprob.png"):
        assert (tiny_repo / "plots" / image).read_bytes()[:4] == b"\x89PNG"
    shown = json.loads(_dvc(tiny_repo, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown["errors"]
    assert {"plots/relearn/harmful_30/gd/seed_1_lr_0.001.csv", "plots/unlearn/ssiuu/seed_0.csv",
            "plots/train/base/seed_1.csv", "plots/diagnose/gd.csv",
            "plots/relearning_heldout_mcq.png"} <= set(shown["data"])


def test_dvc_metrics_show_lists_the_headline_of_each_model_in_a_narrow_table(tiny_repo):
    table = _dvc(tiny_repo, "metrics", "show").stdout.splitlines()
    assert max(len(line) for line in table) < 400
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {f"metrics/headline/{name}.json"
                         for name in ("base", "oracle", *METHODS)}
    columns = table[0].split()
    assert {"forget_acc", "forget_mcq", "retain_acc", "harmful_30_oracle_gap_mcq",
            "stop_reached_seeds"} <= set(columns)
    summary = _metrics(tiny_repo, "summary")
    gd = _metrics(tiny_repo, "headline/gd")
    assert gd["forget_mcq"] == summary["models"]["gd"]["unlearned"]["forget_mcq"]
    assert gd["benign_heldout_mcq"] == summary["models"]["gd"]["benign"]["heldout_mcq"]
    assert gd["stop_reached_seeds"] == 2


def test_changed_lambda_reruns_only_that_method(tiny_repo):
    oracle_before = _metrics(tiny_repo, "oracle")
    gd_before = _metrics(tiny_repo, "unlearn/gd")
    _run(tiny_repo, "git", "add", "-A")
    _run(tiny_repo, "git", "commit", "-qm", "lock")
    out = _dvc(tiny_repo, "exp", "run", "-S", "unlearn.losses.ssiuu.lam=0.5").stdout
    assert _ran(out) == {"check", "unlearn@ssiuu", "evaluate_unlearned@ssiuu",
                         "diagnose@ssiuu", "spurious", "relearn@ssiuu-harmful_30",
                         "relearn@ssiuu-benign", "report"}
    assert _metrics(tiny_repo, "oracle") == oracle_before
    assert _metrics(tiny_repo, "unlearn/gd") == gd_before


def test_bad_request_fails_in_prepare_before_any_model(tiny_repo):
    models_before = {p: p.read_bytes() for p in (tiny_repo / "models").rglob("*") if p.is_file()}
    (tiny_repo / "data" / "requests" / "req-9999.json").write_text(json.dumps(
        {"request_id": "req-9999", "received": "2026-11-24", "subjects": ["Nobody Here"]}))
    failed = _dvc(tiny_repo, "repro", check=False)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    assert "rule 'every requested subject present'" in output
    assert "req-9999.json subjects[0]" in output and "Nobody Here" not in output
    assert "Running stage 'base'" not in output
    after = {p: p.read_bytes() for p in (tiny_repo / "models").rglob("*") if p.is_file()}
    assert after == models_before
