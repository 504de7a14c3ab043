"""The stop rule and the learning-rate search of an unlearning run, on a trained tiny model."""

import shutil

import pytest

from ssiuu.config.errors import DataError, ModelSourceError, ParamsError
from ssiuu.config.params import StopParams, UnlearnParams
from ssiuu.model.loading import load_saved, save_model
from ssiuu.scoring.metrics import evaluate_rows
from ssiuu.unlearning.run import gradient_summary, merge_history, unlearn
from ssiuu.unlearning.stop import CHANCE_MCQ, chance_band, stop_thresholds


def test_thresholds_resolve_chance_oracle_and_numbers():
    stop = StopParams(thresholds={"mcq": "chance", "acc": "oracle"})
    rule = stop_thresholds(stop, {"forget_acc": 0.05, "forget_mcq": 0.4, "forget_n": 40})
    assert rule.thresholds == {"mcq": CHANCE_MCQ, "acc": 0.05} and rule.note is None
    assert stop_thresholds(StopParams(thresholds={"acc": 0.1}), None).thresholds == {"acc": 0.1}
    with pytest.raises(ParamsError, match=r"unlearn.stop.thresholds.acc: 'oracle' needs "
                                          r"forget_acc in metrics/oracle.json"):
        stop_thresholds(stop, {"forget_mcq": 0.4})


def test_chance_follows_the_oracle_when_the_oracle_is_far_from_chance():
    stop = StopParams(thresholds={"mcq": "chance"})
    assert chance_band(40) == pytest.approx(2 * (2 / 9 / 40) ** 0.5)
    inside = {"forget_mcq": CHANCE_MCQ - chance_band(40) + 0.01, "forget_n": 40}
    assert stop_thresholds(stop, inside).thresholds == {"mcq": CHANCE_MCQ}
    for far in (0.07, 0.6):
        rule = stop_thresholds(stop, {"forget_mcq": far, "forget_n": 40})
        assert rule.thresholds == {"mcq": far}
        assert f"follows the oracle's {far:.3f} instead of chance" in rule.note
    few = {"forget_mcq": 0.1, "forget_n": 4}  # 4 facts: 0.1 is within the noise of chance
    assert stop_thresholds(stop, few).thresholds == {"mcq": CHANCE_MCQ}


def _params(lrs, max_steps, eval_every=1):
    return UnlearnParams.model_validate({
        "methods": ["gd"], "train": {"lrs": lrs, "max_steps": max_steps},
        "stop": {"rule": "threshold", "thresholds": {"acc": 0.0}, "eval_every": eval_every}})


def test_lowest_learning_rate_that_reaches_the_threshold_is_kept(trained_tiny, tiny_facts,
                                                                 tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "base")
    forget = [r for r in tiny_facts if r["subject"] == tiny_facts[0]["subject"]]
    retain = [r for r in tiny_facts if r["subject"] != tiny_facts[0]["subject"]]
    outcome = unlearn("gd", tmp_path / "base", forget, retain, _params([1e-2, 1e-6], 15),
                      {"acc": 0.0}, 32)
    assert [a.lr for a in outcome.attempts] == [1e-6, 1e-2]
    assert not outcome.attempts[0].reached and outcome.attempts[0].steps == 15
    assert outcome.reached and outcome.lr == 1e-2 and 0 < outcome.steps < 15
    assert evaluate_rows(outcome.model, tokenizer, forget, 32)["acc"] == 0.0
    history = outcome.history
    assert [h["step"] for h in history] == list(range(outcome.steps + 1))
    assert history[0]["forget_acc"] == 1.0 and history[-1]["forget_acc"] == 0.0
    assert {"forget_loss", "retain_loss", "retain_acc", "forget_mcq"} <= set(history[-1])
    untouched = evaluate_rows(model, tokenizer, forget, 32)["acc"]
    assert untouched == 1.0


def test_the_last_logged_row_is_the_kept_models_own_score(trained_tiny, tiny_facts, tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "base")
    forget = [r for r in tiny_facts if r["subject"] == tiny_facts[0]["subject"]]
    retain = [r for r in tiny_facts if r["subject"] != tiny_facts[0]["subject"]]
    for method in ("gd", "npo"):
        outcome = unlearn(method, tmp_path / "base", forget, retain, _params([1e-2], 15),
                          {"acc": 0.0}, 32)
        last = outcome.history[-1]
        scores = evaluate_rows(outcome.model, tokenizer, forget, 32, multiple_choice=True)
        for key in ("acc", "mcq", "logprob"):
            assert last[f"forget_{key}"] == pytest.approx(scores[key], abs=1e-6), (method, key)
        assert "batch_forget_answer_logprob" in last


def test_training_and_evaluation_logs_may_not_share_a_column():
    with pytest.raises(ValueError, match="share column"):
        merge_history([{"step": 1, "forget_logprob": -30.0}], [{"step": 1, "forget_logprob": -8.0}])


def test_a_run_that_never_gets_there_says_so(trained_tiny, tiny_facts, tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "base")
    forget = [r for r in tiny_facts if r["subject"] == tiny_facts[0]["subject"]]
    outcome = unlearn("ga", tmp_path / "base", forget, tiny_facts, _params([1e-7], 3, 2),
                      {"acc": 0.0}, 32)
    assert not outcome.reached and outcome.steps == 3 and len(outcome.attempts) == 1
    scored = [h["step"] for h in outcome.history if "forget_acc" in h]
    assert scored == [0, 2, 3]  # every eval_every steps, and always the last one


def test_stopping_on_mcq_without_distractors_is_a_clear_error(trained_tiny, tiny_facts,
                                                              tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "base")
    bare = [{**r, "distractors": []} for r in tiny_facts[:2]]
    with pytest.raises(DataError, match="unlearn.stop.thresholds.mcq: no forget row has two"):
        unlearn("gd", tmp_path / "base", bare, tiny_facts, _params([1e-3], 2), {"mcq": 0.3}, 32)


def _saved_base(trained_tiny, tiny_facts, tmp_path):
    """The tiny model saved as ``tmp_path/base``; it, its tokenizer, one subject's facts
    (forget) and the others' (retain)."""
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "base")
    forget = [r for r in tiny_facts if r["subject"] == tiny_facts[0]["subject"]]
    retain = [r for r in tiny_facts if r["subject"] != tiny_facts[0]["subject"]]
    return model, tokenizer, forget, retain


def test_exact_ssiuu_runs_with_eager_attention_and_saves_the_model_as_it_was(
        trained_tiny, tiny_facts, tmp_path):
    model, tokenizer, forget, retain = _saved_base(trained_tiny, tiny_facts, tmp_path)
    params = UnlearnParams.model_validate({
        "methods": ["ssiuu"], "train": {"lrs": [1e-3], "max_steps": 4},
        "losses": {"ssiuu": {"lam": 1.0, "grad": "exact"}},
        "stop": {"rule": "threshold", "thresholds": {"acc": 0.0}, "eval_every": 1}})
    before = model.config._attn_implementation
    assert before != "eager"
    never = {"acc": -1.0}  # four steps, all with the regulariser active but the first
    outcome = unlearn("ssiuu", tmp_path / "base", forget, retain, params, never, 32)
    assert outcome.steps == 4
    assert outcome.model.config._attn_implementation == before
    assert f"attention ran eager during unlearning ({before} has none)" in outcome.note
    save_model(outcome.model, tokenizer, tmp_path / "unlearned")
    assert "eager" not in (tmp_path / "unlearned" / "config.json").read_text()
    summary = gradient_summary(outcome.history)
    assert summary["reg_grad_ratio_median"] > 0 and summary["loss_grad_norm_median"] > 0
    assert summary["reg_grad_ratio_max"] >= summary["reg_grad_ratio_median"]
    plain = unlearn("gd", tmp_path / "base", forget, retain, params, never, 32)
    assert plain.note is None and set(gradient_summary(plain.history)) == {
        "loss_grad_norm_median"}


def test_the_gradient_summary_leaves_out_the_step_without_an_anchor():
    history = [{"step": 1, "loss_grad_norm": 4.0, "reg_grad_norm": 0.0, "reg_grad_ratio": 0.0},
               {"step": 2, "loss_grad_norm": 2.0, "reg_grad_norm": 1.0, "reg_grad_ratio": 0.5},
               {"step": 3, "loss_grad_norm": 1.0, "reg_grad_norm": 2.0, "reg_grad_ratio": 2.0},
               {"step": 3, "forget_acc": 0.0}]
    assert gradient_summary(history) == {"loss_grad_norm_median": 2.0,
                                         "reg_grad_norm_median": 1.5,
                                         "reg_grad_ratio_median": 1.25,
                                         "reg_grad_ratio_max": 2.0}



def test_retain_is_scored_every_retain_every_checks_and_at_the_end(trained_tiny, tiny_facts,
                                                                   tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "base")
    forget = [r for r in tiny_facts if r["subject"] == tiny_facts[0]["subject"]]
    params = UnlearnParams.model_validate({
        "methods": ["gd"], "train": {"lrs": [1e-7], "max_steps": 7},
        "stop": {"rule": "threshold", "thresholds": {"acc": 0.0}, "eval_every": 1,
                 "retain_every": 3}})
    every = _params([1e-7], 7)
    never = {"acc": -1.0}
    sparse = unlearn("gd", tmp_path / "base", forget, tiny_facts, params, never, 32)
    dense = unlearn("gd", tmp_path / "base", forget, tiny_facts, every, never, 32)
    assert [int(row["step"]) for row in sparse.history if "retain_acc" in row] == [0, 3, 6, 7]
    assert all("forget_acc" in row for row in sparse.history)
    assert [row["forget_logprob"] for row in sparse.history] == [
        row["forget_logprob"] for row in dense.history]  # the run itself is unchanged


def test_lora_unlearning_saves_an_adapter_read_back_merged_into_its_base(
        trained_tiny, tiny_facts, tmp_path):
    _, tokenizer, forget, retain = _saved_base(trained_tiny, tiny_facts, tmp_path)
    params = UnlearnParams.model_validate({
        "methods": ["ssiuu"], "train": {"lrs": [1e-2], "max_steps": 30,
                                        "lora": {"r": 4, "alpha": 8}},
        "losses": {"ssiuu": {"lam": 1.0}},
        "stop": {"rule": "threshold", "thresholds": {"acc": 0.0}, "eval_every": 1}})
    outcome = unlearn("ssiuu", tmp_path / "base", forget, retain, params, {"acc": 0.0}, 32)
    assert outcome.reached and outcome.steps > 1
    assert gradient_summary(outcome.history)["reg_grad_ratio_median"] > 0  # on the adapters
    trainable = {name for name, p in outcome.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    saved = save_model(outcome.model, tokenizer, tmp_path / "unlearned")
    assert (saved / "adapter_config.json").is_file()
    assert not (saved / "model.safetensors").exists()
    merged, loaded_tokenizer = load_saved(saved)
    assert not hasattr(merged, "peft_config")
    ours = evaluate_rows(outcome.model, tokenizer, forget, 32, multiple_choice=True)
    theirs = evaluate_rows(merged, loaded_tokenizer, forget, 32, multiple_choice=True)
    assert theirs["acc"] == ours["acc"] == 0.0
    assert theirs["logprob"] == pytest.approx(ours["logprob"], abs=1e-4)
    base_again, _ = load_saved(tmp_path / "base")
    assert evaluate_rows(base_again, tokenizer, forget, 32)["acc"] == 1.0  # base untouched
    shutil.rmtree(tmp_path / "base")
    with pytest.raises(ModelSourceError, match="the base model of its LoRA adapter"):
        load_saved(saved)


def _stop_slice():
    """Facts about four people the tiny model never saw (after its eight)."""
    from ssiuu.config.params import GeneratorParams
    from ssiuu.data.generator import generate_stop_facts

    return generate_stop_facts(GeneratorParams(n_people=8, n_holdout_people=0, n_stop_people=4,
                                               attributes=["birth_city", "employer"]))


def _two_people_forgotten(trained_tiny, tiny_facts, tmp_path):
    """The tiny model saved as ``tmp_path/base``; two people's facts to forget, the rest
    to retain, and a stop slice."""
    save_model(*trained_tiny[:2], tmp_path / "base")
    subjects = sorted({r["subject"] for r in tiny_facts if r["subject"]})[:2]
    return ([r for r in tiny_facts if r["subject"] in subjects],
            [r for r in tiny_facts if r["subject"] not in subjects], _stop_slice())


@pytest.mark.parametrize("z", [1.0, 0.02])  # 4 facts: inside within a few steps; never
def test_the_reference_rule_keeps_its_closest_check_and_says_how_far_it_is(
        z, trained_tiny, tiny_facts, tmp_path):
    from ssiuu.scoring.metrics import score_rows
    from ssiuu.unlearning.stop import compare_to_reference

    model, tokenizer, _ = trained_tiny
    forget, retain, stop_rows = _two_people_forgotten(trained_tiny, tiny_facts, tmp_path)
    params = UnlearnParams.model_validate({
        "methods": ["gd"], "train": {"lrs": [1e-3, 1e-2], "max_steps": 40},
        "stop": {"rule": "reference", "z": z, "patience": 3}})
    outcome = unlearn("gd", tmp_path / "base", forget, retain, params, {}, 32,
                      stop_rows=stop_rows)
    assert outcome.attempts[0].lr == 1e-2  # the ladder starts at the highest rate
    for earlier in outcome.attempts[:-1]:  # and goes down only after a jump over the band
        assert earlier.jumps and not earlier.reached
    check = outcome.check
    assert check is not None and outcome.thresholds == {}
    kept = [row for row in outcome.history if row["step"] == outcome.steps]
    assert kept and kept[0]["stop_distance"] == pytest.approx(check.distance, abs=1e-4)
    scored = [row["stop_distance"] for row in outcome.history if "stop_distance" in row]
    assert check.distance == pytest.approx(min(scored), abs=1e-4)
    closest = min(outcome.attempts, key=lambda attempt: attempt.distance)
    assert (outcome.lr, outcome.steps) == (closest.lr, closest.kept_step)
    assert outcome.reached == (check.distance == 0.0) == (check.position == "inside")

    def per_fact(rows):
        scores = score_rows(outcome.model, tokenizer, rows, 32)
        return {"logprob": [s.logprob for s in scores], "share": [s.share for s in scores]}

    assert outcome.reached == (z == 1.0)
    again = compare_to_reference(per_fact(forget), per_fact(stop_rows), z)
    for score, value in check.statistics.items():  # the kept weights are that check's
        assert again.statistics[score] == pytest.approx(value, abs=1e-3), score


def test_the_reference_rule_without_a_stop_slice_is_a_clear_error(trained_tiny, tiny_facts,
                                                                  tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "base")
    params = UnlearnParams.model_validate({
        "methods": ["gd"], "train": {"lrs": [1e-3], "max_steps": 2}})
    with pytest.raises(DataError, match="needs a stop slice.*n_stop_people.*data.jsonl.stop"):
        unlearn("gd", tmp_path / "base", tiny_facts[:2], tiny_facts, params, {}, 32)


def test_the_forget_floor_needs_a_stop_slice_under_either_rule(trained_tiny, tiny_facts,
                                                               tmp_path):
    model, tokenizer, _ = trained_tiny
    save_model(model, tokenizer, tmp_path / "base")
    params = UnlearnParams.model_validate({
        "methods": ["gd"], "stop": {"rule": "threshold"},
        "train": {"lrs": [1e-3], "max_steps": 2, "forget_floor": "stop_slice"}})
    with pytest.raises(DataError, match="unlearn.train.forget_floor: 'stop_slice' needs a "
                                        "stop slice.*data.jsonl.stop"):
        unlearn("gd", tmp_path / "base", tiny_facts[:2], tiny_facts, params, {"acc": 0.0}, 32)


def test_the_forget_floor_stops_pushing_facts_at_the_stop_slice_level(trained_tiny, tiny_facts,
                                                                      tmp_path):
    from ssiuu.scoring.metrics import aggregate, score_rows

    model, tokenizer, _ = trained_tiny
    forget, retain, stop_rows = _two_people_forgotten(trained_tiny, tiny_facts, tmp_path)
    never_seen = aggregate(score_rows(model, tokenizer, stop_rows, 32))["logprob"]
    reached = {}
    for floor in (None, "stop_slice"):  # a threshold never reached: every step runs
        params = UnlearnParams.model_validate({
            "methods": ["gd"], "stop": {"rule": "threshold", "thresholds": {"acc": -1.0}},
            "train": {"lrs": [3e-4], "max_steps": 120, "forget_floor": floor}})
        outcome = unlearn("gd", tmp_path / "base", forget, retain, params, {"acc": -1.0}, 32,
                          stop_rows=stop_rows)
        assert outcome.steps == 120
        reached[floor] = aggregate(score_rows(outcome.model, tokenizer, forget, 32))["logprob"]
        assert outcome.floor == (None if floor is None else pytest.approx(never_seen))
    assert reached[None] < never_seen - 10.0  # plain GA drives the facts far past it
    assert reached["stop_slice"] > never_seen - 1.5  # the floor holds them near it


def test_centring_keeps_the_most_central_check_after_the_first_inside(trained_tiny, tiny_facts,
                                                                      tmp_path):
    forget, retain, stop_rows = _two_people_forgotten(trained_tiny, tiny_facts, tmp_path)
    outcomes = {}
    for centre in (0, 4):
        params = UnlearnParams.model_validate({
            "methods": ["gd"], "train": {"lrs": [1e-3, 1e-2], "max_steps": 40},
            "stop": {"rule": "reference", "z": 1.0, "patience": 3, "centre_checks": centre}})
        outcomes[centre] = unlearn("gd", tmp_path / "base", forget, retain, params, {}, 32,
                                   stop_rows=stop_rows)
    first, centred = outcomes[0], outcomes[4]
    assert first.reached and centred.reached and first.lr == centred.lr
    checks = [row for row in centred.history if "stop_t_logprob" in row]
    largest = {row["step"]: max(abs(row["stop_t_logprob"]), abs(row["stop_t_share"]))
               for row in checks}
    inside = [step for step in largest if largest[step] <= 1.0]
    assert inside[0] == first.steps  # the same run up to the first check inside
    after = [step for step in largest if step >= first.steps]
    assert centred.steps == min(after, key=lambda step: largest[step])
    assert centred.check.largest <= first.check.largest
    assert centred.check.largest == pytest.approx(largest[centred.steps], abs=1e-4)
    ended = max(largest)  # four checks in a row without a more central one, or below the band
    assert (ended - centred.steps == 4 * params.stop.eval_every
            or any(row["stop_t_logprob"] < -1.0 or row["stop_t_share"] < -1.0
                   for row in checks if row["step"] == ended))


def test_the_token_floor_keeps_the_forget_facts_lowest_tokens_near_the_never_seen_level(
        trained_tiny, tiny_facts, tmp_path):
    import statistics

    from ssiuu.scoring.privacy import membership_scores

    model, tokenizer, _ = trained_tiny
    forget, retain, stop_rows = _two_people_forgotten(trained_tiny, tiny_facts, tmp_path)
    never_seen = statistics.fmean(s["min_k"] for s in membership_scores(
        model, tokenizer, stop_rows, 32, 0.4))
    lowest = {}
    for token_floor in (None, 0.4):  # a threshold never reached: every step runs
        params = UnlearnParams.model_validate({
            "methods": ["gd"], "stop": {"rule": "threshold", "thresholds": {"acc": -1.0}},
            "train": {"lrs": [1e-3], "max_steps": 60, "forget_floor": "stop_slice",
                      "forget_token_floor": token_floor}})
        outcome = unlearn("gd", tmp_path / "base", forget, retain, params, {"acc": -1.0}, 32,
                          stop_rows=stop_rows)
        assert outcome.token_floor == (None if token_floor is None
                                       else pytest.approx(never_seen))
        lowest[token_floor] = statistics.fmean(s["min_k"] for s in membership_scores(
            outcome.model, tokenizer, forget, 32, 0.4))
    assert lowest[None] < never_seen - 2.0  # the fact floor alone: a few tokens far below
    assert lowest[0.4] > lowest[None] + 1.0


def test_the_advantage_term_lowers_the_answers_share_against_its_alternatives(
        trained_tiny, tiny_facts, tmp_path):
    import torch

    from ssiuu.data.encoding import collate, encode
    from ssiuu.model.logprobs import sequence_logprobs
    from ssiuu.unlearning.methods.advantage import alternative_answers

    _, tokenizer, _ = trained_tiny
    forget, retain, stop_rows = _two_people_forgotten(trained_tiny, tiny_facts, tmp_path)
    drawn = alternative_answers(forget, retain, 2, seed=0)
    batch = collate([encode(tokenizer, row["question"], answer, 32)
                     for row, others in zip(forget, drawn, strict=True)
                     for answer in (row["answer"], *others)], tokenizer.pad_token_id)
    share = {}
    for advantage in (None, {"beta": 1.0, "alternatives": 2}):
        params = UnlearnParams.model_validate({
            "methods": ["gd"], "stop": {"rule": "threshold", "thresholds": {"acc": -1.0}},
            "train": {"lrs": [1e-3], "max_steps": 20, "forget_advantage": advantage}})
        outcome = unlearn("gd", tmp_path / "base", forget, retain, params, {"acc": -1.0}, 32)
        with torch.no_grad():
            logp = sequence_logprobs(outcome.model, batch).view(-1, 3)
        share[advantage is not None] = (logp[:, 0] - torch.logsumexp(logp, dim=1)).mean()
        terms = [row["advantage_loss"] for row in outcome.history if "advantage_loss" in row]
        assert bool(terms) == (advantage is not None)
    assert share[True] < share[False] - 0.5


def test_too_few_alternatives_fail_naming_the_fact_before_any_model_is_loaded(tiny_facts,
                                                                              tmp_path):
    params = UnlearnParams.model_validate({
        "methods": ["gd"], "stop": {"rule": "threshold", "thresholds": {"acc": -1.0}},
        "train": {"lrs": [1e-3], "max_steps": 2,
                  "forget_advantage": {"beta": 1.0, "alternatives": 32}}})
    forget = tiny_facts[:2]
    with pytest.raises(DataError, match=f"forget fact {forget[0]['id']}: .* 32 needed"):
        unlearn("gd", tmp_path / "no-such-model", forget, tiny_facts[2:], params,
                {"acc": -1.0}, 32)
