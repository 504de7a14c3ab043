"""Relearning attacks: what each attack trains on, the curve it records, and the derived scores."""

from __future__ import annotations

import pytest
import torch

import ssiuu.attack.attacks as attacks
from ssiuu.attack.attacks import attack_data, attack_kind, peak, run_attacks
from ssiuu.config.errors import DataError
from ssiuu.config.params import GeneratorParams, RelearnParams
from ssiuu.data.encoding import encode_rows
from ssiuu.data.generator import generate_benign
from ssiuu.model.architecture import ArchitectureError, linear_sites
from ssiuu.model.loading import save_model
from ssiuu.scoring.metrics import aggregate, evaluate_rows, score_rows
from ssiuu.scoring.privacy import membership_aucs
from ssiuu.unlearning.attribution import net_attribution, rank_correlation


def _forget(facts, n_subjects=2):
    subjects = sorted({r["subject"] for r in facts if r["subject"]})[:n_subjects]
    return [r for r in facts if r["subject"] in subjects]


def _relearn(lrs=(1e-2,), steps=10, eval_every=5):
    return RelearnParams.model_validate({"attacks": ["harmful_50"], "train": {
        "lrs": list(lrs), "steps": steps, "batch_size": 4, "eval_every": eval_every}})


@pytest.mark.parametrize("name, expected", [("benign", ("benign", 0.0)),
                                            ("harmful_10", ("harmful", 0.1)),
                                            ("harmful_99", ("harmful", 0.99))])
def test_attack_names_parse(name, expected):
    assert attack_kind(name) == expected


@pytest.mark.parametrize("name", ["harmful", "harmful_0", "harmful_100", "harmless_10",
                                  "harmful_x"])
def test_unknown_attack_names_are_errors(name):
    with pytest.raises(ValueError, match=name):
        attack_kind(name)


def test_harmful_attack_trains_on_the_injected_facts_and_is_judged_on_the_rest(tiny_facts):
    forget = _forget(tiny_facts)  # 4 facts
    data = attack_data("harmful_50", forget, [], seed=0)
    ids = {r["id"] for r in forget}
    train_ids = {r["id"] for r in data.train}
    heldout_ids = {r["id"] for r in data.heldout}
    assert len(data.train) == 2 and train_ids == {r["id"] for r in data.injected}
    assert not train_ids & heldout_ids and train_ids | heldout_ids == ids
    assert not {r["question"] for r in data.train} & {r["question"] for r in data.heldout}


def test_harmful_attack_split_is_seeded_and_independent_of_row_order(tiny_facts):
    forget = _forget(tiny_facts, 4)  # 8 facts
    first = attack_data("harmful_30", forget, [], seed=0)
    assert len(first.injected) == 2  # round(0.3 * 8)
    again = attack_data("harmful_30", list(reversed(forget)), [], seed=0)
    assert {r["id"] for r in again.injected} == {r["id"] for r in first.injected}
    others = [{r["id"] for r in attack_data("harmful_30", forget, [], s).injected}
              for s in range(1, 6)]
    assert any(ids != {r["id"] for r in first.injected} for ids in others)
    every = attack_data("harmful_99", forget, [], seed=0)
    assert len(every.heldout) == 1  # always at least one fact to judge on


def test_benign_attack_holds_no_forget_fact(tiny_facts):
    forget = _forget(tiny_facts)
    benign = generate_benign(GeneratorParams(n_benign=20))
    data = attack_data("benign", forget, benign, seed=0)
    assert data.train == benign and data.heldout == forget and data.injected == []
    subjects = {r["subject"] for r in forget}
    assert not {r["id"] for r in data.train} & {r["id"] for r in forget}
    assert not any(s in r["question"] or s in r["answer"] for r in data.train for s in subjects)


def test_attacks_without_data_are_clear_errors(tiny_facts):
    with pytest.raises(DataError, match="benign split: empty"):
        attack_data("benign", _forget(tiny_facts), [], seed=0)
    with pytest.raises(DataError, match="forget split: harmful_10 needs at least 2 facts"):
        attack_data("harmful_10", _forget(tiny_facts)[:1], [], seed=0)


def test_harmful_attack_trains_on_exactly_the_injected_facts(tiny_facts, trained_tiny,
                                                             blank_model_dir, monkeypatch):
    _, tokenizer, _ = trained_tiny
    forget = _forget(tiny_facts)
    retain = [r for r in tiny_facts if r not in forget]
    data = attack_data("harmful_50", forget, [], seed=0)
    seen = []

    def spy(model, batches):
        seen.extend(tuple(int(t) for t, keep in zip(ids, mask, strict=True) if keep)
                    for ids, mask in zip(batches["train"]["input_ids"],
                                         batches["train"]["attention_mask"], strict=True))
        return real(model, batches)

    real = attacks.nll_loss
    monkeypatch.setattr(attacks, "nll_loss", spy)
    [run] = run_attacks(blank_model_dir, [data], retain, [], _relearn(), 32)[data.name]
    injected = {tuple(e["input_ids"]) for e in encode_rows(tokenizer, data.injected, 32)}
    heldout = {tuple(e["input_ids"]) for e in encode_rows(tokenizer, data.heldout, 32)}
    assert len(seen) == 10 * 2 and set(seen) == injected and not set(seen) & heldout
    assert [p["step"] for p in run.curve] == [0, 5, 10]
    first, last = run.curve[0], run.curve[-1]
    assert last["injected_logprob"] > first["injected_logprob"] + 1.0
    assert {"heldout_acc", "heldout_mcq", "retain_acc", "forget_logprob"} <= set(last)
    assert "utility_acc" not in last  # no utility rows given
    assert peak(run.curve, "injected_logprob") == max(p["injected_logprob"]
                                                      for p in run.curve[1:])


def test_each_learning_rate_restarts_from_the_saved_model(tiny_facts, blank_model_dir):
    forget = _forget(tiny_facts)
    data = attack_data("harmful_50", forget, [], seed=0)
    runs = run_attacks(blank_model_dir, [data], tiny_facts[:6], tiny_facts[6:8],
                       _relearn(lrs=(1e-3, 1e-2), steps=4, eval_every=2), 32)[data.name]
    assert [r.lr for r in runs] == [1e-3, 1e-2]
    assert runs[0].curve[0] == runs[1].curve[0]
    assert runs[1].curve[-1]["injected_logprob"] > runs[0].curve[-1]["injected_logprob"]
    assert "utility_acc" in runs[0].curve[0] and "utility_acc" not in runs[0].curve[1]


def test_attacks_run_together_give_what_each_gives_alone(tiny_facts, blank_model_dir):
    forget = _forget(tiny_facts)
    harmful, benign = (attack_data("harmful_50", forget, tiny_facts[6:10], seed=0),
                       attack_data("benign", forget, tiny_facts[6:10], seed=0))
    knobs = _relearn(lrs=(1e-3, 1e-2), steps=4, eval_every=2)
    together = run_attacks(blank_model_dir, [harmful, benign], tiny_facts[:6], tiny_facts[6:8],
                           knobs, 32)
    for data in (harmful, benign):
        alone = run_attacks(blank_model_dir, [data], tiny_facts[:6], tiny_facts[6:8], knobs,
                            32)[data.name]
        assert [run.curve for run in together[data.name]] == [run.curve for run in alone]
        assert [run.heldout_facts for run in together[data.name]] == [
            run.heldout_facts for run in alone]
    # the untouched model's scores, shared: both attacks see the same forget set at step 0
    assert (together["benign"][0].curve[0]["forget_logprob"]
            == pytest.approx(together["harmful_50"][1].curve[0]["forget_logprob"]))
    other = attack_data("harmful_50", forget[1:], [], seed=0)
    with pytest.raises(ValueError, match="split from other forget facts"):
        run_attacks(blank_model_dir, [harmful, other], tiny_facts[:6], [], knobs, 32)


def test_each_run_gives_the_rank_correlation_of_the_attribution_before_and_after(
        tiny_facts, trained_tiny, tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "model")
    data = attack_data("harmful_50", _forget(tiny_facts), [], seed=0)
    gentle, strong = run_attacks(tmp_path / "model", [data], tiny_facts[:6], [],
                                 _relearn(lrs=(1e-6, 5e-2), steps=6, eval_every=3),
                                 32)[data.name]
    examples = encode_rows(tokenizer, [*data.heldout, *data.injected], 32)
    before = net_attribution(model, examples, tokenizer.pad_token_id)
    assert before.shape == (sum(site.width for site, _ in linear_sites(model)),)
    assert gentle.attribution_rho > 0.99  # lr 1e-6 for 6 steps moves nothing
    assert strong.attribution_rho < gentle.attribution_rho - 0.05
    # each held-out fact's scores per scored step: their means are the curve's
    heldout_ids = sorted(row["id"] for row in data.heldout)
    for point, facts in zip(strong.curve, strong.heldout_facts, strict=True):
        assert facts["step"] == point["step"] and sorted(facts["logprob"]) == heldout_ids
        assert sum(facts["mcq"].values()) / len(facts["mcq"]) == pytest.approx(
            point["heldout_mcq"])
        assert sum(facts["logprob"].values()) / len(heldout_ids) == pytest.approx(
            point["heldout_logprob"])


def test_rank_correlation_is_spearman_s():
    before = torch.tensor([0.1, -2.0, 3.0, 0.5])
    assert rank_correlation(before, before * 10 + 1) == pytest.approx(1.0)
    assert rank_correlation(before, -before) == pytest.approx(-1.0)
    assert rank_correlation(before, torch.tensor([1.0, 2.0, 4.0, 3.0])) == pytest.approx(0.8)
    with pytest.raises(ArchitectureError, match="not the same neurons"):
        rank_correlation(before, before[:3])


def test_subset_scores_match_evaluation_of_the_subset(tiny_facts, trained_tiny):
    model, tokenizer, _ = trained_tiny
    rows = tiny_facts[:12]
    scores = score_rows(model, tokenizer, rows, 32, batch_size=5)
    assert [s.id for s in scores] == [r["id"] for r in rows]
    for part in (rows[:5], rows[5:]):
        subset = [s for s in scores if s.id in {r["id"] for r in part}]
        assert aggregate(subset) == pytest.approx(evaluate_rows(model, tokenizer, part, 32))


def test_peak_ignores_the_starting_point():
    curve = [{"step": 0, "a": 0.9}, {"step": 5, "a": 0.2}, {"step": 10, "a": 0.4}]
    assert peak(curve, "a") == 0.4
    with pytest.raises(ValueError, match="'b'"):
        peak(curve, "b")


def test_with_a_holdout_every_scored_step_measures_membership_on_the_heldout_facts(
        tiny_facts, trained_tiny, tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "model")
    people = sorted({r["subject"] for r in tiny_facts if r["subject"]})
    forget = [r for r in tiny_facts if r["subject"] in people[:3]]
    holdout = [r for r in tiny_facts if r["subject"] in people[5:]]  # stand-ins, same shape
    data = attack_data("harmful_50", forget, [], seed=0)
    [run] = run_attacks(tmp_path / "model", [data], tiny_facts[:6], [],
                        _relearn(steps=4, eval_every=2), 32, holdout=holdout,
                        mia_k=0.4)[data.name]
    assert [int(p["step"]) for p in run.curve] == [0, 2, 4]
    start = run.curve[0]
    assert start == {**start, **{f"heldout_mia_{a}_auc": pytest.approx(v) for a, v in
                                 membership_aucs(model, tokenizer, data.heldout, holdout, 32,
                                                 0.4).items()}}
    plain = run_attacks(tmp_path / "model", [data], tiny_facts[:6], [],
                        _relearn(steps=4, eval_every=2), 32)[data.name][0]
    assert not any(key.startswith("heldout_mia_") for key in plain.curve[0])
    assert {k: v for k, v in run.curve[-1].items() if "mia" not in k} == pytest.approx(
        plain.curve[-1])  # membership is only measured, it changes nothing
