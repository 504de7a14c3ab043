"""The model families users bring, each as a tiny random model built offline from its config.

For each family: neuron attribution reads it (hook discovery, one row per forget example
and one column per neuron of every linear layer of every block), one unlearning step of
every method of the catalogue (Ssiuu in both gradient modes) changes it, one attack step
(a full fine-tune and LoRA) runs on it, and it saves and loads unchanged.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    Phi3Config,
    Qwen2Config,
)

from ssiuu.attack.attacks import attack_data, run_attacks
from ssiuu.config.catalog import METHODS
from ssiuu.config.params import (
    GeneratorParams,
    LossesParams,
    RelearnParams,
    UnlearnParams,
)
from ssiuu.data.encoding import encode_rows
from ssiuu.data.generator import generate_benign
from ssiuu.model import loading
from ssiuu.model.architecture import (
    SUPPORTED_FAMILIES,
    ArchitectureError,
    linear_sites,
)
from ssiuu.model.loading import load_model, load_saved, save_model
from ssiuu.unlearning.attribution import neuron_attribution
from ssiuu.unlearning.run import unlearn

SHAPE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 64}
FAMILIES = {
    "llama": (LlamaConfig, {**SHAPE, "num_key_value_heads": 2}),
    "mistral": (MistralConfig, {**SHAPE, "num_key_value_heads": 2}),
    "qwen2": (Qwen2Config, {**SHAPE, "num_key_value_heads": 2}),
    "gemma": (GemmaConfig, {**SHAPE, "num_key_value_heads": 1, "head_dim": 8}),
    "phi3": (Phi3Config, {**SHAPE, "num_key_value_heads": 4}),
    "gpt2": (GPT2Config, {"n_embd": 32, "n_inner": 64, "n_layer": 2, "n_head": 4,
                          "n_positions": 64}),
    "gpt_neox": (GPTNeoXConfig, SHAPE),
    "opt": (OPTConfig, {"hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "max_position_embeddings": 64,
                        "word_embed_proj_dim": 32}),
}
MAX_LENGTH = 32


def _family_model(family: str, tokenizer) -> torch.nn.Module:
    config_class, shape = FAMILIES[family]
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config_class(vocab_size=len(tokenizer), **shape,
                                                         **ids))


@pytest.fixture(scope="module")
def split(tiny_facts):
    people = sorted({row["subject"] for row in tiny_facts if "distractors" in row})
    forget = [row for row in tiny_facts if row["subject"] in people[:2]]
    retain = [row for row in tiny_facts if row["subject"] in people[2:]]
    utility = [row for row in tiny_facts if "distractors" not in row][:8]
    return forget, retain, utility


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_attributes_unlearns_is_attacked_and_round_trips(
        family, trained_tiny, split, tmp_path):
    tokenizer = trained_tiny[1]
    forget, retain, utility = split
    model = _family_model(family, tokenizer)
    base_dir = save_model(model, tokenizer, tmp_path / "base")
    loaded, loaded_tokenizer = load_saved(base_dir)
    assert type(load_model(str(base_dir))) is type(model)  # a user's model folder: accepted
    assert type(loaded) is type(model)
    assert [loaded_tokenizer(row["question"]).input_ids for row in forget] == [
        tokenizer(row["question"]).input_ids for row in forget]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  loaded.state_dict().values(), strict=True))

    examples = encode_rows(tokenizer, forget, MAX_LENGTH)
    attribution = neuron_attribution(loaded, examples, tokenizer.pad_token_id)
    widths = sum(site.width for site, _ in linear_sites(loaded))
    assert attribution.maxima.shape == attribution.minima.shape == (len(forget), widths)
    assert {site.layer for site in attribution.sites} == {0, 1}
    assert torch.isfinite(attribution.maxima).all() and attribution.maxima.abs().sum() > 0

    start = {name: value.clone() for name, value in loaded.state_dict().items()}
    losses = LossesParams.model_validate({"rmu": {"layer": 1}})
    for method in METHODS:
        params = UnlearnParams(methods=[method], losses=losses, stop={"rule": "threshold"},
                               train={"lrs": [1e-3], "max_steps": 1, "forget_batch_size": 8,
                                      "retain_batch_size": 8})
        outcome = unlearn(method, base_dir, forget, retain, params, {"acc": -1.0},
                          MAX_LENGTH, eval_batch_size=16)
        assert outcome.steps == 1 and not outcome.reached, (family, method)
        moved = [name for name, value in outcome.model.state_dict().items()
                 if not torch.equal(value, start[name])]
        assert moved, (family, method)
        assert all(torch.isfinite(value).all()
                   for value in outcome.model.state_dict().values()), (family, method)

    benign = generate_benign(GeneratorParams(n_benign=8))
    data = [attack_data("harmful_50", forget, benign, seed=0)]
    for lora in (None, {"r": 4, "alpha": 8}):
        knobs = RelearnParams(attacks=["harmful_50"],
                              train={"lrs": [1e-3], "steps": 1, "eval_every": 1,
                                     "batch_size": 4, "lora": lora})
        runs = run_attacks(base_dir, data, retain, utility, knobs, MAX_LENGTH,
                           eval_batch_size=16)
        (run,) = runs["harmful_50"]
        assert [point["step"] for point in run.curve] == [0, 1], (family, lora)
        assert run.curve[1]["forget_logprob"] != run.curve[0]["forget_logprob"], (family, lora)
        assert -1 <= run.attribution_rho <= 1, (family, lora)


def test_the_supported_families_are_the_tested_ones():
    def key(name: str) -> str:
        return name.lower().replace("-", "").replace("_", "")

    assert sorted(map(key, SUPPORTED_FAMILIES)) == sorted(map(key, FAMILIES))


def test_a_model_whose_blocks_attribution_cannot_find_is_refused_at_load(
        trained_tiny, tmp_path, monkeypatch):
    tokenizer = trained_tiny[1]
    folder = save_model(_family_model("llama", tokenizer), tokenizer, tmp_path / "model")
    broken = _family_model("llama", tokenizer)
    broken.model.layers = torch.nn.Sequential(*broken.model.layers)  # no ModuleList of blocks
    # transformers rebuilds a saved model from its config, so hand load_model the broken one
    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained",
                        lambda *args, **kwargs: broken)
    with pytest.raises(ArchitectureError) as refused:
        load_model(str(folder))
    message = str(refused.value)
    assert message.startswith(f"model.name: {str(folder)!r}: LlamaForCausalLM: no list of 2 "
                              "transformer blocks found")
    assert "tested: Llama, Mistral, Qwen2, Gemma, Phi-3, GPT-2, GPT-NeoX, OPT" in message
