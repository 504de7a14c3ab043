"""Unlearning losses: signs, one-step effects, Ssiuu's regulariser and its λ = 0 identity."""

import copy
import math

import pytest
import torch

from ssiuu.data.encoding import collate, encode_rows
from ssiuu.logprobs import sequence_logprobs
from ssiuu.methods.npo import REFERENCE_KEY, with_reference_logprobs
from ssiuu.methods.objective import build_objective
from ssiuu.methods.ssiuu import AttributionRegulariser, penalised_parameters
from ssiuu.params import LossesParams, TrainParams
from ssiuu.training import make_loader, train

METHODS = ["ga", "gd", "npo", "ssiuu", "ssiuu_ga", "ssiuu_npo"]


def _split(model, tokenizer, facts):
    forget_rows = [row for row in facts if row["subject"] == facts[0]["subject"]]
    retain_rows = [row for row in facts if row["subject"] != facts[0]["subject"]]
    pad = tokenizer.pad_token_id
    forget = with_reference_logprobs(model, encode_rows(tokenizer, forget_rows, 32), pad)
    retain = encode_rows(tokenizer, retain_rows, 32)
    return {"forget": collate(forget, pad), "retain": collate(retain, pad)}, forget, retain


@pytest.mark.parametrize("method", METHODS)
def test_each_loss_has_its_sign_and_one_step_lowers_the_forget_probability(
        trained_tiny, tiny_facts, method):
    model = copy.deepcopy(trained_tiny[0]).train()
    batches, _, _ = _split(model, trained_tiny[1], tiny_facts)
    objective = build_objective(method, LossesParams(), model)
    assert objective.needs_retain == (method not in ("ga", "ssiuu_ga"))
    with torch.no_grad():
        before = sequence_logprobs(model, batches["forget"]).mean().item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    optimizer.zero_grad()
    loss, logs = objective(model, batches)
    loss.backward()
    optimizer.step()
    if method.endswith("npo"):
        # log π = log π_ref at the start, so each example contributes (2/β)·log 2
        assert logs["forget_loss"] == pytest.approx(2 / 0.1 * math.log(2), rel=1e-4)
    else:
        # minus the NLL of a memorised answer: negative, close to 0
        assert -0.1 < logs["forget_loss"] < 0
    if objective.needs_retain:
        assert loss.item() == pytest.approx(logs["forget_loss"] + logs["retain_loss"],
                                            rel=1e-5)
    with torch.no_grad():
        after = sequence_logprobs(model, batches["forget"]).mean().item()
    assert after < before


def _run(method, losses, model, forget, retain, pad, steps=4):
    objective = build_objective(method, losses, model)
    loaders = {"forget": make_loader(forget, 64, pad, seed=0)}
    if objective.needs_retain:
        loaders["retain"] = make_loader(retain, 64, pad, seed=0)
    params = TrainParams(steps=steps, lr=1e-3, schedule="constant", warmup_ratio=0.0,
                         log_every=1)
    return train(model, loaders, objective, params, seed=0)


@pytest.mark.parametrize(("wrapped", "plain"), [("ssiuu", "gd"), ("ssiuu_ga", "ga"),
                                                ("ssiuu_npo", "npo")])
def test_ssiuu_with_lambda_zero_equals_its_base_method_bit_for_bit(
        trained_tiny, tiny_facts, wrapped, plain):
    base, tokenizer, _ = trained_tiny
    _, forget, retain = _split(base, tokenizer, tiny_facts)
    zero = LossesParams.model_validate({wrapped: {"lam": 0.0}})
    with_reg, without = copy.deepcopy(base), copy.deepcopy(base)
    reg_run = _run(wrapped, zero, with_reg, forget, retain, tokenizer.pad_token_id)
    _run(plain, zero, without, forget, retain, tokenizer.pad_token_id)
    assert reg_run.history[-1]["n_neg"] > 0
    for (name, a), b in zip(with_reg.named_parameters(), without.parameters(), strict=True):
        assert torch.equal(a, b), name
    moved = copy.deepcopy(base)
    _run(wrapped, LossesParams.model_validate({wrapped: {"lam": 1.0}}), moved, forget, retain,
         tokenizer.pad_token_id)
    assert any(not torch.equal(a, b) for a, b in zip(moved.parameters(),
                                                     without.parameters(), strict=True))


def test_regulariser_gradient_is_two_lambda_delta_g_on_negative_entries_only(
        trained_tiny, tiny_facts):
    model = copy.deepcopy(trained_tiny[0]).double()
    batches, _, _ = _split(model, trained_tiny[1], tiny_facts)
    params = penalised_parameters(model, "linear")
    assert len(params) == len(list(model.model.layers)) * 7
    lam = 0.5
    regulariser = AttributionRegulariser(params, lam)

    def probability_sum():
        return sequence_logprobs(model, batches["forget"]).exp().sum()

    model.zero_grad(set_to_none=True)
    first = regulariser.add_gradient(probability_sum())
    assert first["reg"] == 0.0
    assert all(torch.count_nonzero(p.grad) == 0 for p in params)
    anchor = [a.clone() for a in regulariser.anchor]
    with torch.no_grad():
        for p in params:
            p.add_(0.01 * torch.randn_like(p))
    model.zero_grad(set_to_none=True)
    logs = regulariser.add_gradient(probability_sum())
    added = [p.grad.clone() for p in params]
    # reference: autograd of the explicit penalty with g = ∂P/∂φ held constant
    g = torch.autograd.grad(probability_sum(), params)
    model.zero_grad(set_to_none=True)
    penalty = 0.0
    n_negative = 0
    for p, g_j, a_prev in zip(params, g, anchor, strict=True):
        attribution = p * g_j.detach()
        negative = (attribution < 0).detach()
        n_negative += int(negative.sum())
        penalty = penalty + lam * ((a_prev - attribution) ** 2 * negative).sum()
    penalty.backward()
    assert logs["reg"] == pytest.approx(penalty.item(), rel=1e-9)
    assert logs["n_neg"] == n_negative > 0
    for p, got in zip(params, added, strict=True):
        assert torch.allclose(got, p.grad, rtol=1e-9, atol=1e-15)
    outside = [(got * (a >= 0)).abs().max().item() for got, a in zip(
        added, regulariser.anchor, strict=True)]
    assert max(outside) == 0.0


def test_npo_reference_is_the_starting_model(trained_tiny, tiny_facts):
    model, tokenizer, _ = trained_tiny
    batches, forget, _ = _split(model, tokenizer, tiny_facts)
    with torch.no_grad():
        now = sequence_logprobs(model, batches["forget"])
    assert torch.allclose(batches["forget"][REFERENCE_KEY], now, atol=1e-5)
    assert all(REFERENCE_KEY in example for example in forget)


def test_unknown_method_is_a_clear_error(trained_tiny):
    with pytest.raises(ValueError, match="unknown unlearning method 'rmu'"):
        build_objective("rmu", LossesParams(), trained_tiny[0])
