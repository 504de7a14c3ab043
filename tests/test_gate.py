"""The release gate and the records built around it: verdicts, reasons, ranks, certificate."""

from __future__ import annotations

import math

import pytest

from ssiuu.config.params import GateParams, load_params
from ssiuu.records.certificate import CertifiedVersion, certificate_markdown
from ssiuu.release.compliance import flatten, registered_model_name, version_metrics
from ssiuu.release.gate import gate_versions

ATTACKS = ("harmful_30", "benign")


def _scores(retain: float = 1.0, utility: float = 1.0) -> dict:
    return {"forget_acc": 0.0, "forget_mcq": 0.3, "retain_acc": retain, "utility_acc": utility}


def _model(gaps: dict[str, float | None], reached: bool = True, **kept: float) -> dict:
    return {"unlearned": _scores(**kept),
            **{attack: {"oracle_gap_mcq": gap, "heldout_mcq": 0.3} for attack, gap in
               gaps.items()},
            "stop": {"reached": reached}}


def _summary(**methods: list[dict]) -> dict:
    base = {"unlearned": _scores(), **{a: {"oracle_gap_mcq": 0.6} for a in ATTACKS}}
    seeds = len(next(iter(methods.values())))
    return {"per_seed": {str(s): {"base": base, "oracle": base,
                                  **{m: runs[s] for m, runs in methods.items()}}
                         for s in range(seeds)}}


def test_a_robust_method_that_kept_retain_passes_in_every_seed():
    summary = _summary(gd=[_model({"harmful_30": 0.02, "benign": -0.1}),
                           _model({"harmful_30": 0.04, "benign": 0.0}, retain=0.97)])
    verdicts = gate_versions(summary, "gd", ATTACKS, GateParams())
    assert all(v.passed and not v.reasons for v in verdicts.values())
    assert verdicts[0].rank == (0.04, -1.0) and verdicts[1].rank == (0.04, -0.97)
    assert min(verdicts.values(), key=lambda v: v.rank) is verdicts[0]


def test_knowledge_back_in_one_seed_fails_every_seed_of_the_method_and_says_where():
    summary = _summary(npo=[_model({"harmful_30": 0.0, "benign": 0.0}),
                            _model({"harmful_30": 0.2, "benign": 0.0})])
    verdicts = gate_versions(summary, "npo", ATTACKS, GateParams())
    for verdict in verdicts.values():
        assert not verdict.passed
        assert verdict.reasons == ("harmful_30, seed 1: held-out forget mcq came back +0.200 "
                                   "above the oracle's (max 0.05)",)


def test_a_version_that_lost_utility_fails_alone_and_a_missed_stop_fails_the_method():
    summary = _summary(gd=[_model({"harmful_30": 0.0, "benign": 0.0}, utility=0.35),
                           _model({"harmful_30": 0.0, "benign": 0.0})])
    verdicts = gate_versions(summary, "gd", ATTACKS, GateParams())
    assert not verdicts[0].passed and verdicts[1].passed
    assert "utility accuracy 0.350" in verdicts[0].reasons[0]
    missed = _summary(gd=[_model({"harmful_30": 0.0, "benign": 0.0}, reached=False)])
    assert gate_versions(missed, "gd", ATTACKS, GateParams())[0].reasons == (
        "seed 0: unlearning did not reach its stop",)
    lenient = GateParams(require_stop=False)
    assert gate_versions(missed, "gd", ATTACKS, lenient)[0].passed


def test_a_reference_stop_outside_its_band_says_which_way_and_how_far():
    outside = _model({"harmful_30": 0.0, "benign": 0.0}, reached=False)
    outside["stop"] = {"reached": False, "rule": "reference", "position": "split",
                       "distance": 0.8, "t": {"logprob": -1.2, "share": 1.8}}
    verdict = gate_versions(_summary(gd=[outside]), "gd", ATTACKS, GateParams())[0]
    assert verdict.reasons == (
        "seed 0: the forget set stayed not matched on both scores to never-seen facts: its "
        "closest check is 0.80 standard errors outside the stop band (logprob t -1.20, "
        "share t +1.80)",)


def test_an_accuracy_gap_within_the_noise_of_its_facts_does_not_fail_the_gate():
    def seeds(own: float) -> dict:
        oracle = {"unlearned": _scores(), "harmful_30": {"heldout_mcq": 0.33}}
        row = {"heldout_mcq": own, "oracle_gap_mcq": round(own - 0.33, 4), "heldout_n": 28}
        model = {"unlearned": _scores(), "harmful_30": row, "stop": {"reached": True}}
        return {"per_seed": {"0": {"base": oracle, "oracle": oracle, "gd": model}}}

    noise = gate_versions(seeds(0.40), "gd", ("harmful_30",), GateParams())[0]
    assert noise.passed and noise.worst_gap == 0.07  # +0.07 on 28 facts: SE 0.12
    back = gate_versions(seeds(0.73), "gd", ("harmful_30",), GateParams())[0]
    error = ((0.73 * 0.27 + 0.33 * 0.67) / 28) ** 0.5
    assert back.reasons == (
        f"harmful_30, seed 0: held-out forget mcq came back +0.400 above the oracle's, at "
        f"least {0.4 - 1.645 * error:+.3f} over its 28 held-out facts (z 1.645; max 0.05)",)
    point = gate_versions(seeds(0.40), "gd", ("harmful_30",), GateParams(gap_z=0))[0]
    assert point.reasons == ("harmful_30, seed 0: held-out forget mcq came back +0.070 "
                             "above the oracle's (max 0.05)",)


def test_no_counted_attack_step_is_a_failure_not_a_pass():
    summary = _summary(gd=[_model({"harmful_30": None, "benign": 0.0})])
    verdict = gate_versions(summary, "gd", ATTACKS, GateParams())[0]
    assert not verdict.passed and "no counted attack step" in verdict.reasons[0]


def test_version_metrics_carry_the_method_and_both_references():
    metrics = version_metrics(_summary(gd=[_model({"harmful_30": 0.1, "benign": 0.0})])
                              ["per_seed"]["0"], "gd")
    assert metrics["unlearned.retain_acc"] == 1.0
    assert metrics["harmful_30.oracle_gap_mcq"] == 0.1
    assert metrics["oracle.harmful_30.oracle_gap_mcq"] == 0.6
    assert metrics["base.unlearned.utility_acc"] == 1.0
    assert metrics["stop.reached"] == 1.0
    assert flatten({"a": {"b": [1, 2]}, "c": 3}) == {"a.b": "[1, 2]", "c": 3}


def test_registered_model_name_is_one_per_model_and_request_set_unless_params_name_it():
    params = load_params("params.yaml")
    assert registered_model_name(params, ["req-0001"]) == "ssiuu-scratch-req-0001"
    assert registered_model_name(params, ["r2", "r1"]) == "ssiuu-scratch-r1.r2"
    many = registered_model_name(params, [f"r{i}" for i in range(5)])
    assert many.startswith("ssiuu-scratch-5-requests-") and len(many) == 33
    assert many != registered_model_name(params, [f"r{i}" for i in range(1, 6)])
    hub = params.model_copy(update={"model": params.model.model_copy(
        update={"name": "HuggingFaceTB/SmolLM2-135M"})})
    assert registered_model_name(hub, ["a"]) == "ssiuu-SmolLM2-135M-a"
    named = params.model_copy(update={"registry": params.registry.model_copy(
        update={"model_name": "acme-support-bot"})})
    assert registered_model_name(named, ["a"]) == "acme-support-bot"


def test_certificate_says_released_or_not_and_why_with_ids_only():
    request = {"id": "req-0007", "received": "2026-11-20", "subjects": 3, "sha256": "ab" * 32}
    failed = [CertifiedVersion(1, "gd", 0, False, ("seed 0: unlearning did not reach its "
                                                   "stop",), ()),
              CertifiedVersion(2, "npo", 0, False, ("benign, seed 0: came back",), ())]
    text = certificate_markdown(request, "ssiuu-x", failed, ATTACKS, {"forget": "cd" * 32},
                                "0123abc")
    assert "**Not released.**" in text and "- gd: seed 0: unlearning did not reach" in text
    assert "3 data subject(s)" in text and "`" + "cd" * 32 + "`" in text
    assert "ssiuu audit --request req-0007" in text
    released = [CertifiedVersion(3, "ssiuu", 1, True, (), ("candidate", "production"))]
    text = certificate_markdown(request, "ssiuu-x", released, ATTACKS, {}, "0123abc")
    assert "**Released.** Version 3 of `ssiuu-x` (ssiuu, seed 1)" in text


def test_a_forget_set_still_detectable_fails_the_gate_with_that_reason():
    def private(privleak: float | None) -> dict:
        model = _model({"harmful_30": 0.0, "benign": 0.0})
        return model if privleak is None else {**model, "privacy": {"privleak_min_k": privleak}}

    gate = GateParams(max_privleak=0.25)
    blind = gate_versions(_summary(gd=[private(0.1), private(-0.2)]), "gd", ATTACKS, gate)
    assert all(v.passed for v in blind.values())
    leaky = gate_versions(_summary(gd=[private(0.1), private(0.6)]), "gd", ATTACKS, gate)
    assert not any(v.passed for v in leaky.values())
    assert leaky[0].reasons == ("seed 1: forget set still detectable by membership inference: "
                                "privleak (min_k) +0.600, beyond ±0.25",)
    erased_too_far = gate_versions(_summary(gd=[private(-0.47)]), "gd", ATTACKS, gate)
    assert erased_too_far[0].reasons == (
        "seed 0: forget set detectable by membership inference the other way (over-unlearned: "
        "its AUC below the oracle's): privleak (min_k) -0.470, beyond ±0.25",)
    unmeasured = gate_versions(_summary(gd=[private(None)]), "gd", ATTACKS, gate)
    assert "membership of the forget set not measured" in unmeasured[0].reasons[0]
    assert gate_versions(_summary(gd=[private(None)]), "gd", ATTACKS, GateParams())[0].passed


def test_hanley_mcneil_error_of_a_chance_auc_is_that_of_the_mann_whitney_statistic():
    from ssiuu.release.gate import auc_error

    assert auc_error(0.5, 40, 40) == pytest.approx(math.sqrt(81 / (12 * 40 * 40)))
    assert auc_error(1.0, 40, 40) == 0.0
    assert auc_error(0.8, 400, 400) < auc_error(0.8, 40, 40) / 3


def test_a_privleak_within_the_noise_of_its_facts_does_not_fail_the_gate():
    def private(auc: float, oracle: float, counted: bool = True) -> dict:
        model = _model({"harmful_30": 0.0, "benign": 0.0})
        privacy = {"mia_min_k_auc": auc, "oracle_min_k_auc": oracle,
                   "privleak_min_k": round((auc - oracle) / oracle, 4)}
        if counted:
            privacy.update(mia_members_n=40, mia_nonmembers_n=40)
        return {**model, "privacy": privacy}

    gate = GateParams(max_privleak=0.25)
    # the default's seed 0: AUC 0.40 against the oracle's 0.646, privleak -0.38 on 40 + 40
    # facts; each AUC's SE is about 0.06, so the bound nearest 0 lies inside ±0.25
    assert gate_versions(_summary(gd=[private(0.40, 0.646)]), "gd", ATTACKS, gate)[0].passed
    point = GateParams(max_privleak=0.25, privleak_z=0)
    assert not gate_versions(_summary(gd=[private(0.40, 0.646)]), "gd", ATTACKS, point)[0].passed
    uncounted = gate_versions(_summary(gd=[private(0.40, 0.646, False)]), "gd", ATTACKS, gate)
    assert not uncounted[0].passed  # without the counts, the point estimate decides
    far = gate_versions(_summary(gd=[private(0.15, 0.646)]), "gd", ATTACKS, gate)[0]
    assert not far.passed
    (reason,) = far.reasons
    assert reason.startswith("seed 0: forget set detectable by membership inference the other "
                             "way (over-unlearned: its AUC below the oracle's): privleak "
                             "(min_k) -0.768, at least ")
    assert reason.endswith(" in size over its members and non-members (z 1.645), beyond ±0.25")
    bound = float(reason.split("at least ")[1].split(" ")[0])
    assert 0.25 < bound < 0.768
