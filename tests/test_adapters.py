"""LoRA attacks through peft: only the adapters train, the saved model's weights stay put."""

from __future__ import annotations

import pytest
import torch

from ssiuu.attack.attacks import attack_data, run_attacks
from ssiuu.config.errors import ParamsError
from ssiuu.config.params import LoraParams, RelearnParams
from ssiuu.model.adapters import with_lora
from ssiuu.model.loading import load_saved


def _lora_relearn(lora: dict, lrs=(5e-2,), steps=9):
    return RelearnParams.model_validate({"attacks": ["harmful_50"], "train": {
        "lrs": list(lrs), "steps": steps, "batch_size": 4, "eval_every": 3, "lora": lora}})


def _forget(facts):
    subjects = sorted({r["subject"] for r in facts if r["subject"]})[:2]
    return [r for r in facts if r["subject"] in subjects]


def test_only_adapters_require_gradients(blank_model_dir):
    model, _ = load_saved(blank_model_dir)
    wrapped = with_lora(model, LoraParams(r=2, target_modules=["q_proj", "v_proj"]), seed=0)
    trainable = {name for name, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert any("q_proj.lora_A" in name for name in trainable)
    assert not any("k_proj" in name or "mlp" in name for name in trainable)


def test_unknown_target_module_names_the_param(blank_model_dir):
    model, _ = load_saved(blank_model_dir)
    with pytest.raises(ParamsError, match=r"params.yaml: relearn.train.lora.target_modules: "):
        with_lora(model, LoraParams(target_modules=["no_such_proj"]), seed=0)


def test_lora_attack_relearns_through_adapters_and_is_seeded(tiny_facts, blank_model_dir):
    before = {k: v.clone() for k, v in load_saved(blank_model_dir)[0].state_dict().items()}
    data = attack_data("harmful_50", _forget(tiny_facts), [], seed=0)
    params = _lora_relearn({"r": 4, "alpha": 8})
    [run] = run_attacks(blank_model_dir, [data], tiny_facts[:6], [], params, 32, seed=1)[data.name]
    assert [p["step"] for p in run.curve] == [0, 3, 6, 9]
    assert run.curve[-1]["injected_logprob"] > run.curve[0]["injected_logprob"] + 0.2
    [again] = run_attacks(blank_model_dir, [data], tiny_facts[:6], [], params, 32,
                          seed=1)[data.name]
    assert again.curve == run.curve
    # the adapters are merged before the attribution after the attack: the same neurons
    assert -1 <= run.attribution_rho < 1 and again.attribution_rho == run.attribution_rho
    after = load_saved(blank_model_dir)[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the saved model is untouched
    full = RelearnParams.model_validate({**params.model_dump(), "train": {
        **params.train.model_dump(), "lora": None}})
    [full_run] = run_attacks(blank_model_dir, [data], tiny_facts[:6], [], full, 32,
                             seed=1)[data.name]
    assert full_run.curve[-1] != run.curve[-1]
