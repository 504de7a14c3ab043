"""Unlearning losses: signs, one-step effects, Ssiuu's regulariser and its λ = 0 identity."""

import copy
import math
from unittest.mock import patch

import pytest
import torch

from ssiuu.config.params import LossesParams, TrainParams
from ssiuu.data.encoding import collate, encode, encode_rows
from ssiuu.model.architecture import ArchitectureError
from ssiuu.model.logprobs import sequence_logprobs
from ssiuu.model.training import make_loader, train
from ssiuu.unlearning.methods.dpo import CHOSEN_REFERENCE_KEY, refusal_examples
from ssiuu.unlearning.methods.npo import REFERENCE_KEY, with_reference_logprobs
from ssiuu.unlearning.methods.objective import build_objective
from ssiuu.unlearning.methods.ssiuu import AttributionRegulariser, penalised_parameters

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
    grad_logs = objective.after_backward(model)
    optimizer.step()
    assert grad_logs["loss_grad_norm"] > 0
    assert ("reg_grad_ratio" in grad_logs) == method.startswith("ssiuu")
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


def _moved_regulariser(model, batches, lam, grad_mode):
    """A regulariser anchored at ``model``'s attribution, the model then moved a little:
    the regulariser, the penalised parameters, the anchor and ``Σ P`` as a function."""
    params = penalised_parameters(model, "linear")
    regulariser = AttributionRegulariser(params, lam, grad_mode)

    def probability_sum():
        return sequence_logprobs(model, batches["forget"]).exp().sum()

    first = regulariser.compute_gradient(probability_sum())
    assert first["reg"] == 0.0 and first["reg_grad_norm"] == 0.0
    anchor = [a.clone() for a in regulariser.anchor]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in params:
            p.add_(0.01 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return regulariser, params, anchor, probability_sum


def _explicit_penalty(params, anchor, probability_sum, lam, hold_g):
    """``λ Σ_{I−} (A_{t−1} − A_t)²`` written out, with ``g = ∂P/∂φ`` held or not."""
    g = torch.autograd.grad(probability_sum(), params, create_graph=not hold_g)
    penalty, n_negative = 0.0, 0
    for p, g_j, a_prev in zip(params, g, anchor, strict=True):
        attribution = p * (g_j.detach() if hold_g else g_j)
        negative = (attribution < 0).detach()
        n_negative += int(negative.sum())
        penalty = penalty + lam * ((a_prev - attribution) ** 2 * negative).sum()
    return penalty, n_negative


def _held_after_add(regulariser, params):
    """What :meth:`add_held_gradient` adds to zeroed gradients."""
    for p in params:
        p.grad = None
    regulariser.add_held_gradient()
    return [p.grad.clone() for p in params]


def test_regulariser_gradient_is_two_lambda_delta_g_on_negative_entries_only(
        trained_tiny, tiny_facts):
    model = copy.deepcopy(trained_tiny[0]).double()
    batches, _, _ = _split(model, trained_tiny[1], tiny_facts)
    lam = 0.5
    regulariser, params, anchor, probability_sum = _moved_regulariser(model, batches, lam,
                                                                      "first_order")
    assert len(params) == len(list(model.model.layers)) * 7
    logs = regulariser.compute_gradient(probability_sum())
    added = _held_after_add(regulariser, params)
    model.zero_grad(set_to_none=True)
    penalty, n_negative = _explicit_penalty(params, anchor, probability_sum, lam, hold_g=True)
    penalty.backward()
    assert logs["reg"] == pytest.approx(penalty.item(), rel=1e-9)
    assert logs["n_neg"] == n_negative > 0
    for p, got in zip(params, added, strict=True):
        assert torch.allclose(got, p.grad, rtol=1e-9, atol=1e-15)
    assert logs["reg_grad_norm"] == pytest.approx(
        math.sqrt(sum(float(g.square().sum()) for g in added)), rel=1e-9)
    outside = [(got * (a >= 0)).abs().max().item() for got, a in zip(
        added, regulariser.anchor, strict=True)]
    assert max(outside) == 0.0


def test_the_exact_gradient_is_autograd_of_the_penalty_and_a_finite_difference(
        trained_tiny, tiny_facts):
    model = copy.deepcopy(trained_tiny[0]).double()
    model.set_attn_implementation("eager")
    batches, _, _ = _split(model, trained_tiny[1], tiny_facts)
    lam = 0.5
    regulariser, params, anchor, probability_sum = _moved_regulariser(model, batches, lam,
                                                                      "exact")
    logs = regulariser.compute_gradient(probability_sum())
    exact = _held_after_add(regulariser, params)
    model.zero_grad(set_to_none=True)
    penalty, n_negative = _explicit_penalty(params, anchor, probability_sum, lam, hold_g=False)
    assert logs["reg"] == pytest.approx(penalty.item(), rel=1e-9)
    assert logs["n_neg"] == n_negative > 0
    reference = torch.autograd.grad(penalty, params)
    for got, want in zip(exact, reference, strict=True):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-15)
    first_order, _ = _explicit_penalty(params, anchor, probability_sum, lam, hold_g=True)
    held = torch.autograd.grad(first_order, params)
    differences = [float((e - h).norm()) for e, h in zip(exact, held, strict=True)]
    assert max(differences) > 1e-3 * math.sqrt(sum(float(h.square().sum()) for h in held))

    # A central difference of the penalty (the I− mask and anchor fixed) along the gradient.
    direction = [g / math.sqrt(sum(float(x.square().sum()) for x in exact)) for g in exact]
    negatives = [(a < 0) for a in regulariser.anchor]

    def penalty_at(step: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(step * d)
        g = torch.autograd.grad(probability_sum(), params)
        with torch.no_grad():
            value = sum(float((lam * ((a_prev - p * g_j) ** 2 * negative)).sum())
                        for p, g_j, a_prev, negative in zip(params, g, anchor, negatives,
                                                            strict=True))
            for p, d in zip(params, direction, strict=True):
                p.sub_(step * d)
        return value

    eps = 1e-4  # the rotary embeddings stay float32: a smaller step meets their round-off
    slope = (penalty_at(eps) - penalty_at(-eps)) / (2 * eps)
    along = sum(float((g * d).sum()) for g, d in zip(exact, direction, strict=True))
    along_first_order = sum(float((g * d).sum()) for g, d in zip(held, direction, strict=True))
    assert slope == pytest.approx(along, rel=5e-4)
    assert slope != pytest.approx(along_first_order, rel=5e-2)


def test_exact_ssiuu_at_lambda_zero_equals_its_base_method_with_eager_attention(
        trained_tiny, tiny_facts):
    base, tokenizer, _ = trained_tiny
    _, forget, retain = _split(base, tokenizer, tiny_facts)
    zero = LossesParams.model_validate({"ssiuu": {"lam": 0.0, "grad": "exact"}})
    with_reg, without = copy.deepcopy(base), copy.deepcopy(base)
    for model in (with_reg, without):
        model.set_attn_implementation("eager")
    reg_run = _run("ssiuu", zero, with_reg, forget, retain, tokenizer.pad_token_id)
    _run("gd", zero, without, forget, retain, tokenizer.pad_token_id)
    assert reg_run.history[-1]["n_neg"] > 0 and reg_run.history[-1]["reg_grad_ratio"] == 0
    for (name, a), b in zip(with_reg.named_parameters(), without.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_the_ratio_is_the_regulariser_s_share_of_the_step(trained_tiny, tiny_facts):
    base, tokenizer, _ = trained_tiny
    _, forget, retain = _split(base, tokenizer, tiny_facts)
    lam = 1.0
    for grad_mode in ("first_order", "exact"):
        model = copy.deepcopy(base)
        if grad_mode == "exact":
            model.set_attn_implementation("eager")
        losses = LossesParams.model_validate({"ssiuu": {"lam": lam, "grad": grad_mode}})
        history = _run("ssiuu", losses, model, forget, retain, tokenizer.pad_token_id).history
        assert history[0]["reg_grad_norm"] == 0.0
        for row in history[1:]:
            assert row["reg_grad_ratio"] == pytest.approx(
                row["reg_grad_norm"] / row["loss_grad_norm"], rel=1e-12)
            assert row["reg_grad_norm"] > 0 and row["loss_grad_norm"] > 0


def test_npo_reference_is_the_starting_model(trained_tiny, tiny_facts):
    model, tokenizer, _ = trained_tiny
    batches, forget, _ = _split(model, tokenizer, tiny_facts)
    with torch.no_grad():
        now = sequence_logprobs(model, batches["forget"])
    assert torch.allclose(batches["forget"][REFERENCE_KEY], now, atol=1e-5)
    assert all(REFERENCE_KEY in example for example in forget)


def test_unknown_method_is_a_clear_error(trained_tiny):
    with pytest.raises(ValueError, match="unknown unlearning method 'klue'"):
        build_objective("klue", LossesParams(), trained_tiny[0])


def test_dpo_prefers_the_refusal_over_the_forget_answer(trained_tiny, tiny_facts):
    model, tokenizer = copy.deepcopy(trained_tiny[0]).train(), trained_tiny[1]
    pad = tokenizer.pad_token_id
    forget_rows = [row for row in tiny_facts if row["subject"] == tiny_facts[0]["subject"]]
    objective = build_objective("dpo", LossesParams(), model, tokenizer)
    assert objective.forget == "dpo" and objective.needs_retain and objective.beta == 0.1
    assert objective.refusal == (*tokenizer(" I don't know.", add_special_tokens=False)
                                 .input_ids, tokenizer.eos_token_id)
    examples = objective.prepare(model, encode_rows(tokenizer, forget_rows, 32), pad, 4)
    declined = [encode(tokenizer, row["question"], "I don't know.", 32) for row in forget_rows]
    assert refusal_examples(examples, objective.refusal) == declined
    with torch.no_grad():
        answer_ref = sequence_logprobs(model, collate(examples, pad))
        refusal_ref = sequence_logprobs(model, collate(declined, pad))
    batch = collate(examples, pad)
    assert torch.allclose(batch[REFERENCE_KEY], answer_ref, atol=1e-5)
    assert torch.allclose(batch[CHOSEN_REFERENCE_KEY], refusal_ref, atol=1e-5)
    retain = collate(encode_rows(tokenizer, tiny_facts[-6:], 32), pad)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss, logs = objective(model, {"forget": batch, "retain": retain})
    # π = π_ref at the start: every example contributes −(2/β)·log σ(0) = (2/β)·log 2
    assert logs["forget_loss"] == pytest.approx(2 / 0.1 * math.log(2), rel=1e-4)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        assert sequence_logprobs(model, batch).mean() < answer_ref.mean()
        assert (sequence_logprobs(model, collate(declined, pad)).mean()
                > refusal_ref.mean())


def test_dpo_needs_the_tokenizer_for_its_refusal(trained_tiny):
    with pytest.raises(ValueError, match="dpo: DPO needs the tokenizer"):
        build_objective("dpo", LossesParams(), trained_tiny[0])


def test_rmu_steers_one_block_to_its_target_and_trains_only_the_chosen_mlps(
        trained_tiny, tiny_facts):
    start, tokenizer = trained_tiny[0], trained_tiny[1]
    model = copy.deepcopy(start).train()
    pad = tokenizer.pad_token_id
    losses = LossesParams.model_validate({"rmu": {"layer": 1, "steering": 5.0, "alpha": 10.0}})
    objective = build_objective("rmu", losses, model, tokenizer)
    steering = objective.steering
    assert steering.trained_layers == [0, 1]
    # the target: a seeded random direction of norm c, the same for the same seed
    assert steering.control.norm().item() == pytest.approx(5.0)
    assert torch.equal(steering.control,
                       build_objective("rmu", losses, start, tokenizer).steering.control)
    forget_rows = [row for row in tiny_facts if row["subject"] == tiny_facts[0]["subject"]]
    forget = objective.prepare(model, encode_rows(tokenizer, forget_rows, 32), pad, 4)
    retain = objective.prepare_retain(model, encode_rows(tokenizer, tiny_facts[-6:], 32), pad, 4)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".mlp." in name and name.split(".layers.")[1][0] in "01"
                             for name in trainable)
    batches = {"forget": collate(forget, pad), "retain": collate(retain, pad)}
    hidden = {}
    handle = model.model.layers[1].register_forward_hook(
        lambda _m, _i, out: hidden.__setitem__("out", out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        model(input_ids=batches["forget"]["input_ids"],
              attention_mask=batches["forget"]["attention_mask"])
    handle.remove()
    mask = batches["forget"]["attention_mask"].unsqueeze(-1).float()
    expected = (((hidden["out"] - steering.control) ** 2) * mask).sum() / (mask.sum() * 64)
    loss, logs = objective(model, batches)
    assert logs["forget_loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert logs["retain_loss"] == pytest.approx(0.0, abs=1e-10)  # the model is still frozen's
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss.backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == set(trainable)
    assert objective(model, batches)[1]["forget_loss"] < logs["forget_loss"]


def test_rmu_on_a_block_the_model_lacks_is_a_clear_error(trained_tiny):
    losses = LossesParams.model_validate({"rmu": {"layer": 7}})
    with pytest.raises(ArchitectureError, match="unlearn.losses.rmu.layer 7 is not a block"):
        build_objective("rmu", losses, *trained_tiny[:2])


@pytest.mark.parametrize("method", ["ssiuu", "ssiuu_exact"])
def test_gradient_checkpointing_takes_the_same_steps(trained_tiny, tiny_facts, method,
                                                     monkeypatch):
    from ssiuu.model import runtime

    tokenizer = trained_tiny[1]
    models, enabled = {}, []
    enable = type(trained_tiny[0]).activation_checkpointing_enable
    monkeypatch.setattr(type(trained_tiny[0]), "activation_checkpointing_enable",
                        lambda self, *args: enabled.append(args) or enable(self, *args))
    for checkpointing in (False, True):
        monkeypatch.setitem(runtime._SETTINGS, "gradient_checkpointing", checkpointing)
        model = copy.deepcopy(trained_tiny[0])
        model.set_attn_implementation("eager")
        _, forget, retain = _split(model, tokenizer, tiny_facts)
        losses = LossesParams.model_validate({method: {"lam": 10.0}})
        enabled.clear()
        run = _run(method, losses, model, forget, retain, tokenizer.pad_token_id, steps=3)
        assert run.history[-1]["reg_grad_norm"] > 0
        assert len(enabled) == checkpointing and not model.is_activation_checkpointing
        models[checkpointing] = model
    for a, b in zip(models[False].parameters(), models[True].parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(a, b) for a, b in zip(
        models[False].parameters(), trained_tiny[0].parameters(), strict=True))


def test_the_forget_floor_leaves_out_facts_at_or_below_it_and_weighs_each_fact_once():
    from ssiuu.unlearning.methods.ga import ga_loss

    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    values = torch.tensor([[-0.5, -1.5, 0.0], [-3.0, -3.0, -3.0], [-2.0, 0.0, 0.0],
                           [-0.1, -0.2, -0.3]])  # per fact: -1.0, -3.0, -2.0, -0.2
    losses, grads = {}, {}
    for floor in (None, -2.0, -10.0):
        token_logp = values.clone().requires_grad_(True)
        losses[floor] = ga_loss(token_logp * mask, mask, floor)
        losses[floor].backward()
        grads[floor] = token_logp.grad
    assert losses[None].item() == pytest.approx(-13.6 / 9)  # per token, as the paper's GA
    assert losses[-10.0].item() == pytest.approx((-1.0 - 3.0 - 2.0 - 0.2) / 4)  # per fact
    assert losses[-2.0].item() == pytest.approx((-1.0 - 0.2) / 4)  # -3.0 below, -2.0 at
    kept = torch.tensor([True, False, False, True])
    assert not grads[-2.0][~kept].any()
    assert torch.equal(grads[-2.0][kept], grads[-10.0][kept])  # the others' unchanged
    assert torch.allclose(grads[-10.0].sum(dim=1), torch.full((4,), 0.25))  # a quarter each


def test_the_token_floor_leaves_out_tokens_at_or_below_it_within_each_facts_mean():
    from ssiuu.unlearning.methods.ga import ga_loss

    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1]], dtype=torch.bool)
    values = torch.tensor([[-0.5, -6.0, 0.0], [-3.0, -1.0, -8.0], [-0.1, -0.2, -0.3]])
    token_logp = values.clone().requires_grad_(True)
    loss = ga_loss(token_logp * mask, mask, None, -5.0)
    loss.backward()
    # each fact: its tokens above -5 over all its tokens; the mean over the facts
    direct = ((-0.5 / 2) + (-3.0 - 1.0) / 3 + (-0.6 / 3)) / 3
    assert loss.item() == pytest.approx(direct)
    below = values <= -5.0
    assert not token_logp.grad[below].any()
    assert torch.allclose(token_logp.grad[mask & ~below],
                          torch.tensor([1 / 6, 1 / 9, 1 / 9, 1 / 9, 1 / 9, 1 / 9]))
    token_logp.grad = None
    both = ga_loss(token_logp * mask, mask, -3.5, -5.0)  # the fact floor still applies
    assert both.item() == pytest.approx(((-0.5 / 2) + (-0.6 / 3)) / 3)  # fact 2: -4 < -3.5


def _kl_reference(model, tokenizer, rows, record):
    """A KL reference prepared on ``rows`` (recorded, or a frozen copy) and its batch."""
    from ssiuu.unlearning.methods import gd

    reference = gd.KLReference()
    limit = gd.RECORD_LIMIT_BYTES if record else 0
    with patch.object(gd, "RECORD_LIMIT_BYTES", limit):
        examples = reference.prepare(model, encode_rows(tokenizer, rows, 32),
                                     tokenizer.pad_token_id, batch_size=2)
    assert (reference.frozen is None) == record
    return reference, examples


@pytest.mark.parametrize("record", [True, False], ids=["recorded", "frozen_copy"])
def test_the_kl_retain_term_is_zero_at_the_start_and_weighs_every_text_position(
        trained_tiny, tiny_facts, record):
    from ssiuu.unlearning.methods.gd import retain_kl

    model, tokenizer, _ = trained_tiny
    model = copy.deepcopy(model)
    rows = [row for row in tiny_facts if row["subject"]][:5]
    reference, examples = _kl_reference(model, tokenizer, rows, record)
    if not record:
        assert not any(p.requires_grad for p in reference.frozen.parameters())
    batch = collate(examples, tokenizer.pad_token_id)
    at_start = retain_kl(model, reference, batch)
    at_start.backward()
    assert abs(at_start.item()) < 1e-6
    assert max(p.grad.abs().max().item() for p in model.parameters()) < 1e-6
    with torch.no_grad():  # move the model: the KL is now positive
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    moved = retain_kl(model, reference, batch).item()
    assert moved > 1e-4
    # padding is not text: the batch's value is the position-weighted mean of each row's own
    singles = [(retain_kl(model, reference, collate([example], tokenizer.pad_token_id)).item(),
                len(example["input_ids"]) - 1) for example in examples]
    weighted = sum(kl * n for kl, n in singles) / sum(n for _, n in singles)
    assert moved == pytest.approx(weighted, rel=1e-4)


def test_recorded_and_frozen_kl_references_give_the_same_term(trained_tiny, tiny_facts):
    from ssiuu.unlearning.methods.gd import retain_kl

    model, tokenizer, _ = trained_tiny
    model = copy.deepcopy(model)
    rows = [row for row in tiny_facts if row["subject"]][:6]
    recorded, examples = _kl_reference(model, tokenizer, rows, record=True)
    frozen, _ = _kl_reference(model, tokenizer, rows, record=False)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    batch = collate(examples[::-1][:4], tokenizer.pad_token_id)  # another order, widths
    assert retain_kl(model, recorded, batch).item() == pytest.approx(
        retain_kl(model, frozen, batch).item(), rel=1e-5)
    with pytest.raises(ValueError, match="prepare was not run"):
        retain_kl(model, recorded, collate(encode_rows(tokenizer, rows, 32),
                                           tokenizer.pad_token_id))


@pytest.mark.parametrize("method", ["ga", "gd", "npo", "dpo", "rmu", "ssiuu", "ssiuu_exact"])
def test_the_kl_reference_and_the_floor_go_to_the_methods_whose_terms_take_them(
        trained_tiny, method):
    from ssiuu.config.catalog import method_spec

    model, tokenizer, _ = trained_tiny
    losses = LossesParams.model_validate({"rmu": {"layer": 1}})
    objective = build_objective(method, losses, model, tokenizer, "kl", -2.5)
    spec = method_spec(method)
    assert (objective.reference is not None) == (spec.retain == "outputs")
    assert objective.floor == (-2.5 if spec.forget == "ga" else None)
    assert build_objective(method, losses, model, tokenizer).reference is None


def test_gd_with_the_kl_retain_term_holds_its_reference_while_it_unlearns(
        trained_tiny, tiny_facts):
    model = copy.deepcopy(trained_tiny[0]).train()
    tokenizer = trained_tiny[1]
    _, forget, retain = _split(model, tokenizer, tiny_facts)
    objective = build_objective("gd", LossesParams(), model, tokenizer, "kl")
    retain = objective.prepare_retain(model, retain, tokenizer.pad_token_id, 64)
    frozen = [values.clone() for values in objective.reference.recorded]
    assert objective.reference.frozen is None and len(frozen) == len(retain)
    batches = {"forget": collate(forget, tokenizer.pad_token_id),
               "retain": collate(retain, tokenizer.pad_token_id)}
    with torch.no_grad():
        before = sequence_logprobs(model, batches["forget"]).mean().item()
    loaders = {"forget": make_loader(forget, 64, tokenizer.pad_token_id, seed=0),
               "retain": make_loader(retain, 64, tokenizer.pad_token_id, seed=0)}
    run = train(model, loaders, objective, TrainParams(steps=4, lr=1e-3, schedule="constant",
                                                       warmup_ratio=0.0, log_every=1), seed=0)
    assert run.history[0]["retain_loss"] < 1e-6 < run.history[-1]["retain_loss"]
    with torch.no_grad():
        assert sequence_logprobs(model, batches["forget"]).mean().item() < before
    for values, before_values in zip(objective.reference.recorded, frozen, strict=True):
        assert torch.equal(values, before_values)


def test_the_advantage_term_is_the_answers_log_share_down_to_an_even_share_only():
    from ssiuu.unlearning.methods.advantage import advantage_loss

    logp = torch.tensor([[-1.0, -3.0, -4.0], [-5.0, -2.0, -2.5]], requires_grad=True)
    loss = advantage_loss(logp)
    shares = logp.detach()[:, 0] - torch.logsumexp(logp.detach(), dim=1)
    assert shares[0] > -math.log(3) > shares[1]  # the second fact is already below even
    assert loss.item() == pytest.approx(shares[0].item() / 2)
    loss.backward()
    assert torch.count_nonzero(logp.grad[1]) == 0 and logp.grad[0, 0] > 0
    assert (logp.grad[0, 1:] < 0).all()  # descending it raises the alternatives


def test_alternatives_are_other_answers_of_the_attribute_never_the_facts_distractors():
    from ssiuu.config.errors import DataError
    from ssiuu.unlearning.methods.advantage import alternative_answers

    retain = [{"id": f"r{n}", "attribute": "city", "answer": f"C{n}"} for n in range(8)]
    retain += [{"id": "y", "attribute": "year", "answer": "1999"}]
    forget = [{"id": "f", "attribute": "city", "answer": "C0", "distractors": ["C1", "C2"]}]
    drawn = alternative_answers(forget, retain, 3, seed=0)
    assert len(drawn[0]) == 3 and set(drawn[0]) <= {f"C{n}" for n in range(3, 8)}
    assert drawn == alternative_answers(forget, retain, 3, seed=0)
    assert any(alternative_answers(forget, retain, 3, seed=s) != drawn for s in range(1, 6))
    with pytest.raises(DataError, match=r"forget_advantage: forget fact f: 5 other answers "
                                        r"of its attribute 'city'.*6 needed"):
        alternative_answers(forget, retain, 6, seed=0)
    with pytest.raises(DataError, match="forget fact g: 0 other answers of its attribute None"):
        alternative_answers([{"id": "g", "answer": "x"}], retain, 1, seed=0)
