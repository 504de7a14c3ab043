"""End to end: the real `dvc repro` on the tiny profile, in a temporary git repository."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import yaml
from chromium import loaded_images

from ssiuu.config.profiles import apply_profile
from ssiuu.workspace import copy_pipeline, isolated_env

REPO = Path(__file__).parents[1]

pytestmark = pytest.mark.e2e


def _run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = isolated_env()
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
                                 / "provenance.json").read_text())
        assert (provenance["role"], provenance["seed"]) == ("base", int(seed))
        assert provenance["requests"] == ["req-0001"] and "seconds" in provenance["run"]
        assert provenance["environment"]["packages"]["torch"] == torch.__version__
    logprobs = [oracle_file["seeds"][seed]["forget_logprob"] for seed in SEEDS]
    assert logprobs[0] != logprobs[1]  # the seeds are different models
    assert oracle_file["mean"]["forget_logprob"] == pytest.approx(sum(logprobs) / 2, abs=1e-4)
    report = json.loads((tiny_repo / "reports" / "data_validation.json").read_text())
    assert report["success"] and report["n_failed"] == 0


def test_membership_inference_tells_the_base_from_the_oracle_and_reaches_the_record(tiny_repo):
    base_file, oracle_file = _metrics(tiny_repo, "base"), _metrics(tiny_repo, "oracle")
    holdout = (tiny_repo / "data" / "prepared" / "holdout.jsonl").read_text().splitlines()
    assert len(holdout) == base_file["seeds"]["0"]["forget_n"]  # 10 people x 2 attributes
    summary = json.loads((tiny_repo / "metrics" / "summary.json").read_text())
    for seed in SEEDS:
        assert base_file["seeds"][seed]["mia_loss_auc"] >= 0.9  # trained on the forget set
        assert 0.2 <= oracle_file["seeds"][seed]["mia_loss_auc"] <= 0.8  # never saw it
        models = summary["per_seed"][seed]
        assert models["oracle"]["privacy"]["privleak_min_k"] == 0.0
        assert models["base"]["privacy"]["privleak_loss"] > 0.1
        assert "privleak_min_k" in models["gd"]["harmful_30"]
    report = (tiny_repo / "reports" / "robustness.md").read_text()
    assert "## Can the forget set still be detected? (membership inference)" in report
    version = _versions(tiny_repo)[0]
    metrics = _client(tiny_repo).get_run(version.run_id).data.metrics
    assert {"privacy.mia_min_k_auc", "privacy.privleak_min_k",
            "oracle.privacy.mia_min_k_auc"} <= set(metrics)
    assert version.tags["ssiuu.data.holdout.sha256"]


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


MODEL = "ssiuu-scratch-req-0001"  # the tiny profile's registered model: model and request set
METHODS = ["gd", "ssiuu"]  # the tiny profile's
VERSIONS = len(METHODS) * len(SEEDS)  # one per method and seed


def _client(repo: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def _versions(repo: Path) -> list:
    return sorted(_client(repo).search_model_versions(f"name='{MODEL}'"),
                  key=lambda v: int(v.version))


def test_register_files_one_gated_version_per_method_and_seed(tiny_repo):
    versions = _versions(tiny_repo)
    # search_model_versions leaves aliases empty in the SQL store (mlflow/mlflow#9783): the
    # registered model holds them
    held = _client(tiny_repo).get_registered_model(MODEL).aliases
    assert len(versions) == VERSIONS
    manifest = json.loads((tiny_repo / "data" / "prepared" / "manifest.json").read_text())
    head = _run(tiny_repo, "git", "rev-parse", "HEAD").stdout.strip()
    lock = yaml.safe_load((tiny_repo / "dvc.lock").read_text())["stages"]
    assert {(v.tags["ssiuu.method"], v.tags["ssiuu.seed"]) for v in versions} == {
        (m, s) for m in METHODS for s in SEEDS}
    for version in versions:
        tags = version.tags
        assert tags["ssiuu.requests"] == "req-0001"
        for split, entry in manifest["splits"].items():
            assert tags[f"ssiuu.data.{split}.sha256"] == entry["sha256"]
        assert tags["ssiuu.git.commit"] == head
        assert tags["ssiuu.dvc_lock.stage"] in lock
        assert tags["ssiuu.gate"] in ("passed", "failed")
        assert (tags["ssiuu.gate.reasons"] == "none") == (tags["ssiuu.gate"] == "passed")
        assert tags["ssiuu.gate"] == "passed" or str(version.version) not in map(str,
                                                                               held.values())
        unlearned = (tiny_repo / "models" / "unlearned" / tags["ssiuu.method"]
                     / f"seed_{tags['ssiuu.seed']}" / "provenance.json")
        made_in = json.loads(unlearned.read_text())["environment"]
        assert json.loads(tags["ssiuu.environment"]) == made_in and made_in["cpu"]
        run = _client(tiny_repo).get_run(version.run_id)
        assert run.data.params["method"] == tags["ssiuu.method"]
        assert {"unlearned.forget_mcq", "harmful_30.oracle_gap_mcq", "benign.heldout_mcq",
                "oracle.unlearned.forget_mcq", "base.unlearned.retain_acc"} <= set(
            run.data.metrics)
    record = json.loads((tiny_repo / "metrics" / "registry.json").read_text())
    assert record["model"] == MODEL and record["added"] == VERSIONS
    certificate = (tiny_repo / "reports" / "requests" / "req-0001.md").read_text()
    assert "# Deletion request req-0001" in certificate and f"ssiuu audit {MODEL}" in certificate
    production = [v for v in versions if str(v.version) == str(held.get("production"))]
    if production:
        assert production[0].tags["ssiuu.gate"] == "passed"
        assert f"Version {production[0].version} of `{MODEL}`" in certificate
    else:
        assert "**Not released.**" in certificate


def test_second_repro_only_rechecks_the_inputs_and_registers_nothing_new(tiny_repo):
    status = json.loads(_dvc(tiny_repo, "status", "--json").stdout)
    assert status == {"check": ["always changed"], "register": ["always changed"]}
    assert _ran(_dvc(tiny_repo, "repro").stdout) == {"check", "register"}
    assert len(_versions(tiny_repo)) == VERSIONS
    assert json.loads((tiny_repo / "metrics" / "registry.json").read_text())["added"] == 0


def _audit(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(repo, sys.executable, "-m", "ssiuu.cli", "audit", *args, check=False)


def _audit_edited(repo: Path, path: Path, edited: bytes, version: int | str
                  ) -> subprocess.CompletedProcess:
    """`ssiuu audit` of ``version`` while ``path`` holds ``edited`` (restored after)."""
    original = path.read_bytes()
    assert edited != original
    path.write_bytes(edited)
    try:
        return _audit(repo, MODEL, str(version))
    finally:
        path.write_bytes(original)


CHANGED = ("data/prepared/forget.jsonl", "models/unlearned/gd/seed_0/model.safetensors",
           "dvc.lock")


def test_audit_passes_untouched_and_names_each_changed_byte(tiny_repo):
    gd = next(v for v in _versions(tiny_repo)
              if (v.tags["ssiuu.method"], v.tags["ssiuu.seed"]) == ("gd", "0"))
    passed = _audit(tiny_repo, MODEL, str(gd.version))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "req-0001" in passed.stdout and gd.tags["ssiuu.data.forget.sha256"] in passed.stdout
    for changed in CHANGED:
        path = tiny_repo / changed
        original = path.read_bytes()
        if changed == "dvc.lock":
            edited = original.replace(b"cmd: python stages/unlearn.py gd",
                                      b"cmd: python stages/unlearn.py  gd")
        else:
            edited = original[:100] + bytes([original[100] ^ 1]) + original[101:]
        failed = _audit_edited(tiny_repo, path, edited, gd.version)
        assert failed.returncode == 1, changed
        assert [line for line in failed.stdout.splitlines() if changed in line], failed.stdout
    assert _audit(tiny_repo, MODEL, str(gd.version)).returncode == 0


def test_audit_fails_on_a_record_changed_in_the_tracking_store_naming_it(tiny_repo):
    """A metric rewritten through MLflow's API, an edited lineage.json artifact and a changed
    byte of the registered weights each make `ssiuu audit` exit 1 naming what changed."""
    import time

    client = _client(tiny_repo)
    gd = next(v for v in _versions(tiny_repo)
              if (v.tags["ssiuu.method"], v.tags["ssiuu.seed"]) == ("gd", "0"))
    assert "ssiuu.weights.sha256" in gd.tags
    run = client.get_run(gd.run_id)
    held = run.data.metrics["unlearned.forget_mcq"]
    client.log_metric(gd.run_id, "unlearned.forget_mcq", 0.25, timestamp=int(time.time() * 1e3))
    try:
        failed = _audit(tiny_repo, MODEL, str(gd.version))
    finally:
        client.log_metric(gd.run_id, "unlearned.forget_mcq", held,
                          timestamp=int(time.time() * 1e3) + 1000)
    assert failed.returncode == 1
    assert "run metric unlearned.forget_mcq: 0.2500 in the run" in failed.stdout
    artifacts = Path(urlparse(run.info.artifact_uri).path)
    logged = [artifacts / "lineage.json",
              max((p for p in (tiny_repo / "mlartifacts").rglob("*.safetensors")
                   if gd.source.split("/")[-1] in str(p)), key=lambda p: p.stat().st_size)]
    for path, named in zip(logged, ["lineage.json: its lineage id", "registered weights"],
                           strict=True):
        original = path.read_bytes()
        edited = (original.replace(b'"gd"', b'"ga"') if path.suffix == ".json" else
                  original[:-8] + bytes([original[-8] ^ 1]) + original[-7:])
        failed = _audit_edited(tiny_repo, path, edited, gd.version)
        assert failed.returncode == 1 and named in failed.stdout, failed.stdout[-2000:]
    assert _audit(tiny_repo, MODEL, str(gd.version)).returncode == 0


def test_audit_lists_every_version_made_for_a_request(tiny_repo):
    listed = _audit(tiny_repo, "--request", "req-0001")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if MODEL in line]
    assert len(rows) == VERSIONS
    assert _audit(tiny_repo, MODEL, "999").returncode == 2


def test_the_logged_report_renders_with_every_figure_away_from_the_workspace(tiny_repo,
                                                                            tmp_path):
    logged = sorted((tiny_repo / "mlartifacts").rglob("report/robustness.html"))
    assert len(logged) >= VERSIONS  # one per version's run
    opened = Path(shutil.copy(logged[0], tmp_path / "robustness.html"))
    figures = opened.read_text().count("<img")
    assert figures == 4  # relearning MCQ and log-prob, attribution shift, regulariser ratio
    assert loaded_images(opened, tmp_path) == [True] * figures


def _forget_strings(repo: Path) -> set[str]:
    rows = [json.loads(line) for line in
            (repo / "data" / "prepared" / "forget.jsonl").read_text().splitlines()]
    answers = {row["answer"] for row in rows if len(row["answer"]) > 4
               and not row["answer"].isdigit()}  # a year or a short code occurs by chance
    return {row["question"] for row in rows} | {row["subject"] for row in rows} | answers


WEIGHT_FILES = {"model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "config.json", "generation_config.json"}


def test_no_forget_text_in_the_store_the_artifacts_or_the_records(tiny_repo):
    secrets = _forget_strings(tiny_repo)
    assert len(secrets) > 20
    scanned = [tiny_repo / "mlflow.db"]
    scanned += [p for p in (tiny_repo / "mlartifacts").rglob("*")
                if p.is_file() and p.name not in WEIGHT_FILES]
    scanned += [tiny_repo / "metrics" / "registry.json",
                *(tiny_repo / "reports" / "requests").glob("*.md")]
    assert len(scanned) > 20
    for path in scanned:
        text = path.read_bytes()
        leaked = [s for s in secrets if s.encode() in text]
        assert not leaked, f"{path}: holds forget text {leaked[:3]}"


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


RETAIN_LOSS = 0.15  # the retain accuracy a method may lose (each of METHODS has a retain term)


def test_every_method_unlearns_to_its_stop_and_keeps_retain(tiny_repo):
    base_file = _metrics(tiny_repo, "base")
    for method in METHODS:
        run_file = _metrics(tiny_repo, f"unlearn/{method}")
        unlearned_file = _metrics(tiny_repo, f"unlearned/{method}")
        assert run_file["reached"] == all(run_file["seeds"][seed]["reached"] for seed in SEEDS)
        for seed in SEEDS:
            run, unlearned = run_file["seeds"][seed], unlearned_file["seeds"][seed]
            base = base_file["seeds"][seed]
            assert run["stop_rule"] == "reference" and run["stop_z"] == 1.0, (method, seed)
            assert 0 < run["steps"] <= run["steps_run"], (method, seed)
            inside = run["stop_position"] == "inside"
            assert run["reached"] == inside == (run["stop_distance"] == 0), (method, seed)
            assert unlearned["retain_acc"] >= base["retain_acc"] - RETAIN_LOSS, (method, seed)
            provenance = json.loads((tiny_repo / "models" / "unlearned" / method
                                     / f"seed_{seed}" / "provenance.json").read_text())
            assert (provenance["role"], provenance["method"]) == ("unlearned", method)
            assert provenance["parent"] == f"models/base/seed_{seed}"
            assert set(provenance["data"]) == {"forget", "retain", "general"}
            assert "seconds" not in run and provenance["run"]["seconds"] > 0
            assert provenance["run"]["stop_distance"] == run["stop_distance"]
            curve = (tiny_repo / "plots" / "unlearn" / method / f"seed_{seed}.csv"
                     ).read_text().splitlines()
            assert curve[0].startswith("step,forget_acc")
            rows = _curve(tiny_repo / "plots" / "unlearn" / method / f"seed_{seed}.csv")
            kept = next(row for row in rows if row["step"] == run["steps"])
            assert kept["stop_distance"] == pytest.approx(run["stop_distance"], abs=1e-3)
            for key in ("forget_acc", "forget_mcq", "forget_logprob", "retain_acc"):
                assert kept[key] == pytest.approx(unlearned[key], abs=1e-3), (method, key)
        diagnosis = _metrics(tiny_repo, f"diagnose/{method}")
        assert set(diagnosis["seeds"]) == set(SEEDS)
        mean = diagnosis["mean"]
        assert mean["d_plus_top100"] >= 0 and mean["d_minus_top100"] >= 0
        assert diagnosis["verdict"] == ("hiding" if mean["d_minus_top100"]
                                        > mean["d_plus_top100"] else "erasing")
    regularised = (tiny_repo / "plots" / "unlearn" / "ssiuu" / "seed_0.csv"
                   ).read_text().splitlines()
    assert {"reg", "n_neg", "reg_grad_norm", "loss_grad_norm", "reg_grad_ratio"} <= set(
        regularised[0].split(","))
    for seed, run in _metrics(tiny_repo, "unlearn/ssiuu")["seeds"].items():
        if run["steps"] > 1:  # the regulariser is active from the second step
            assert run["reg_grad_ratio_median"] > 0, seed
            assert run["reg_grad_ratio_max"] >= run["reg_grad_ratio_median"]
    assert "reg_grad_ratio_median" not in _metrics(tiny_repo, "unlearn/gd")["seeds"]["0"]
    for image in ("spurious_curves.png", "spurious_heatmap.png"):
        assert (tiny_repo / "plots" / image).read_bytes()[:4] == b"\x89PNG"


def _curve(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]


def _curve_file(repo: Path, attack: str, model: str, seed: str, lr: str) -> Path:
    return repo / "plots" / "relearn" / model / attack / f"seed_{seed}_lr_{lr}.csv"


def test_every_model_is_attacked_and_the_oracle_relearns_only_what_it_is_shown(tiny_repo):
    forget = [json.loads(line) for line in
              (tiny_repo / "data" / "prepared" / "forget.jsonl").read_text().splitlines()]
    for attack in ("harmful_30", "benign"):
        for model in ("base", "oracle", *METHODS):
            result_file = _metrics(tiny_repo, f"relearn/{model}/{attack}")
            for seed in SEEDS:
                result = result_file["seeds"][seed]
                attacked = json.loads((tiny_repo / "models" / "attacked" / model / attack
                                       / f"seed_{seed}" / "provenance.json").read_text())
                assert (attacked["role"], attacked["attack"]) == ("attacked", attack)
                assert all("seconds" not in run for run in result["runs"])
                assert [run["lr"] for run in result["runs"]] == [3e-4, 1e-3]
                curves = [_curve(_curve_file(tiny_repo, attack, model, seed, lr))
                          for lr in ("0.0003", "0.001")]
                for curve in curves:
                    assert [p["step"] for p in curve] == [0, 5, 10, 15, 20]
                    assert all("retain_acc" in p and "heldout_mcq" in p for p in curve)
                assert result["peak_heldout_acc"] == pytest.approx(
                    max(p["heldout_acc"] for curve in curves for p in curve[1:]), abs=1e-4)
                assert -1 <= result["attribution_rho_min"] <= 1
                assert result["attribution_rho_min"] == min(
                    run["attribution_rho"] for run in result["runs"])
                facts = json.loads((tiny_repo / "metrics" / "relearn_facts" / model / attack
                                    / f"seed_{seed}.json").read_text())["runs"]
                assert [len(run["points"]) for run in facts] == [5, 5]
                assert len(facts[0]["points"][0]["logprob"]) == result["n_heldout"]
                if attack == "harmful_30":
                    assert (result["n_injected"], result["n_heldout"]) == (6, 14)
                    assert set(result["injected_ids"]) <= {r["id"] for r in forget}
                    oracle = _metrics(tiny_repo, "relearn/oracle/harmful_30")["seeds"][seed]
                    assert result["injected_ids"] == oracle["injected_ids"]  # one split
                else:
                    assert (result["n_train"], result["n_heldout"],
                            result["n_injected"]) == (40, 20, 0)
    splits = _metrics(tiny_repo, "relearn/gd/harmful_30")["seeds"]
    assert splits["0"]["injected_ids"] != splits["1"]["injected_ids"]  # a split per seed
    strong = _metrics(tiny_repo, "relearn/oracle/harmful_30")["seeds"]["0"]["runs"][1]
    assert strong["final"]["injected_acc"] >= strong["start"]["injected_acc"] + 0.5
    base = _metrics(tiny_repo, "relearn/base/benign")["seeds"]["0"]["runs"][0]
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
    for attack in ("harmful_30", "benign"):
        assert set(summary["paired"][attack]) == {"ssiuu-gd"}
        for scores in summary["paired"][attack].values():
            for record in scores.values():
                assert record["low"] <= record["difference"] <= record["high"]
                assert record["n_seeds"] == 2
        assert summary["models"]["ssiuu"][attack]["attribution_rho"] is not None
    worst = summary["paired_worst_case"]
    assert set(worst) == {"ssiuu-gd"}
    for pair, record in worst.items():
        assert record["low"] <= record["difference"] <= record["high"]
        name, base = pair.split("-")
        for model, key in ((name, "regularised"), (base, "base")):
            attack = record[f"{key}_attack"]
            assert record[f"{key}_gap"] == pytest.approx(
                summary["models"][model][attack]["oracle_gap_mcq"], abs=1e-3)
    report = (tiny_repo / "reports" / "robustness.md").read_text()
    assert all(f"| {method} |" in report for method in METHODS)
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    lam = params["unlearn"]["losses"]["ssiuu"]["lam"]
    assert "## The regulariser's strength" in report and f"| ssiuu | gd | {lam:g} |" in report
    assert "## Each regularised method against its base method, paired" in report
    assert "## Does the regulariser lower the worst case?" in report and "**Answer**" in report
    assert "Seeds: 0, 1;" in report and " ± " in report
    assert "<table>" in (tiny_repo / "reports" / "robustness.html").read_text()
    for image in ("relearning_heldout_mcq.png", "relearning_heldout_logprob.png"):
        assert (tiny_repo / "plots" / image).read_bytes()[:4] == b"\x89PNG"
    shown = json.loads(_dvc(tiny_repo, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown["errors"]
    assert {"plots/relearn/gd/harmful_30/seed_1_lr_0.001.csv", "plots/unlearn/ssiuu/seed_0.csv",
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
    reached = _metrics(tiny_repo, "unlearn/gd")["seeds"]
    assert gd["stop_reached_seeds"] == sum(reached[seed]["reached"] for seed in SEEDS)


def test_the_results_doc_is_written_from_the_run_and_again_gives_the_same_file(tiny_repo):
    doc = tiny_repo / "results.md"
    doc.write_text("# tiny\n\n<!-- results:tiny:start -->\n<!-- results:tiny:end -->\n")
    command = (sys.executable, "-m", "ssiuu.report.results", "tiny", "--doc", str(doc))
    _run(tiny_repo, *command)
    first = doc.read_text()
    _run(tiny_repo, *command)
    assert doc.read_text() == first
    rows = {line.split(" | ")[0].lstrip("| "): line for line in first.splitlines()
            if line.startswith("| ")}
    assert {"base", "oracle", *METHODS} <= set(rows)
    versions = json.loads((tiny_repo / "metrics" / "registry.json").read_text())["versions"]
    for method in METHODS:
        passed = sum(v["gate"] == "passed" for v in versions if v["method"] == method)
        assert rows[method].endswith(f"| {passed} of {len(SEEDS)} |")
    assert "Seeds 0, 1;" in first


def test_changed_lambda_reruns_only_that_method(tiny_repo):
    oracle_before = _metrics(tiny_repo, "oracle")
    gd_before = _metrics(tiny_repo, "unlearn/gd")
    registered = {v.version: v.tags for v in _versions(tiny_repo)}
    _run(tiny_repo, "git", "add", "-A")
    _run(tiny_repo, "git", "commit", "-qm", "lock")
    out = _dvc(tiny_repo, "exp", "run", "-S", "unlearn.losses.ssiuu.lam=0.5").stdout
    assert _ran(out) == {"check", "unlearn@ssiuu", "evaluate_unlearned@ssiuu",
                         "diagnose@ssiuu", "spurious", "relearn@ssiuu", "report",
                         "register"}
    assert _metrics(tiny_repo, "oracle") == oracle_before
    assert _metrics(tiny_repo, "unlearn/gd") == gd_before
    after = {v.version: v for v in _versions(tiny_repo)}  # a new lineage: new versions only
    assert {v: after[v].tags for v in registered} == registered
    added = [after[v] for v in after if v not in registered]
    assert sorted((v.tags["ssiuu.method"], v.tags["ssiuu.seed"]) for v in added) == [
        ("ssiuu", seed) for seed in SEEDS]


def _margins_met(summary: dict, method: str, attacks: list[str]) -> dict:
    """Gate margins that ``method``'s versions in this run meet: its own worst values."""
    seeds = summary["per_seed"].values()
    gaps = [models[method][attack]["oracle_gap_mcq"] for models in seeds for attack in attacks]
    drops = {split: max(models["base"]["unlearned"][f"{split}_acc"]
                        - models[method]["unlearned"][f"{split}_acc"] for models in seeds)
             for split in ("retain", "utility")}
    privleak = max(abs(models[method]["privacy"]["privleak_min_k"]) for models in seeds)
    return {"max_oracle_gap": max(0.0, *gaps) + 1e-3, "gap_z": 0.0,
            "max_retain_drop": min(1.0, max(0.0, drops["retain"]) + 1e-3),
            "max_utility_drop": min(1.0, max(0.0, drops["utility"]) + 1e-3),
            "max_privleak": privleak + 1e-3,
            "require_stop": all(models[method]["stop"]["reached"] for models in seeds)}


def test_a_version_that_passes_is_released_and_served_as_saved(tiny_repo, monkeypatch):
    import mlflow

    from ssiuu.data.records import read_jsonl
    from ssiuu.model.loading import load_saved
    from ssiuu.release.registry import tracking_uri
    from ssiuu.scoring.metrics import score_rows

    for version in _versions(tiny_repo):  # the run's own gate: aliases only where it passed
        assert version.tags["ssiuu.gate"] == "passed" or not version.aliases
    params = tiny_repo / "params.yaml"
    original = params.read_text()
    raw = yaml.safe_load(original)
    summary = _metrics(tiny_repo, "summary")
    _set(raw, "registry.model_name", "ssiuu-release-path")
    for key, value in _margins_met(summary, "gd", raw["relearn"]["attacks"]).items():
        _set(raw, f"registry.gate.{key}", value)
    params.write_text(yaml.safe_dump(raw))
    try:
        _dvc(tiny_repo, "repro", "--single-item", "register")
    finally:
        params.write_text(original)
    client = _client(tiny_repo)
    released = sorted(client.search_model_versions("name='ssiuu-release-path'"),
                      key=lambda v: int(v.version))
    gd = [v for v in released if v.tags["ssiuu.method"] == "gd"]
    assert len(gd) == len(SEEDS) and all(v.tags["ssiuu.gate"] == "passed" for v in gd)
    aliases = client.get_registered_model("ssiuu-release-path").aliases
    assert set(aliases) == {"candidate", "production"}
    production = client.get_model_version("ssiuu-release-path", aliases["production"])
    assert production.tags["ssiuu.gate"] == "passed"
    for version in released:
        assert version.tags["ssiuu.gate"] == "passed" or str(version.version) not in (
            aliases.values())
    monkeypatch.chdir(tiny_repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(tiny_repo))
    served = mlflow.transformers.load_model("models:/ssiuu-release-path@production",
                                            return_type="components")
    saved, tokenizer = load_saved(tiny_repo / "models" / "unlearned"
                                  / production.tags["ssiuu.method"]
                                  / f"seed_{production.tags['ssiuu.seed']}")
    retain = read_jsonl(tiny_repo / "data" / "prepared" / "retain.jsonl")[:8]
    ours = score_rows(saved, tokenizer, retain, 40)
    theirs = score_rows(served["model"], served["tokenizer"], retain, 40)
    assert [s.acc for s in theirs] == [s.acc for s in ours] and any(s.acc for s in ours)
    for one, two in zip(ours, theirs, strict=True):
        assert two.logprob == pytest.approx(one.logprob, abs=1e-5)


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
