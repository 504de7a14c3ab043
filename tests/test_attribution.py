"""Neuron attribution: A = h · ∂P/∂h on every linear layer in the blocks, and D+ / D−."""

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    PretrainedConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from ssiuu.data.encoding import IGNORE, collate
from ssiuu.model.architecture import ArchitectureError, linear_sites
from ssiuu.model.logprobs import answer_token_logprobs
from ssiuu.unlearning.attribution import (
    NeuronAttribution,
    attribute_batch,
    attribution_shift,
    most_hiding_site,
    net_attribution,
    neuron_attribution,
)

VOCAB = 40


def _llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=24,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, max_position_embeddings=32))


def _qwen2():
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=VOCAB, hidden_size=16, intermediate_size=24,
                                        num_hidden_layers=3, num_attention_heads=4,
                                        num_key_value_heads=2, max_position_embeddings=32))


def _gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4,
                                      n_positions=32))


def _opt():
    """OPT registers k, v, q but runs q first: hook order must not be assumed."""
    torch.manual_seed(0)
    return OPTForCausalLM(OPTConfig(vocab_size=VOCAB, hidden_size=16, ffn_dim=24,
                                    num_hidden_layers=2, num_attention_heads=4,
                                    word_embed_proj_dim=16, max_position_embeddings=32))


def _keeper(kept, key=None):
    def keep(_module, _inputs, output):
        output.retain_grad()
        if key is None:
            kept.append(output)
        else:
            kept[key] = output
    return keep


def _examples():
    generator = torch.Generator().manual_seed(1)
    examples = []
    for length, prompt in ((7, 4), (9, 5), (6, 3)):
        ids = torch.randint(1, VOCAB, (length,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": [IGNORE] * prompt + ids[prompt:]})
    return examples


@pytest.mark.parametrize(("build", "expected"), [
    (_llama, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]),
    (_qwen2, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]),
    (_gpt2, ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]),
    (_opt, ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj",
            "fc1", "fc2"]),
])
def test_hooks_find_every_linear_layer_of_every_block(build, expected):
    model = build()
    sites = [site for site, _ in linear_sites(model)]
    layers = model.config.num_hidden_layers
    assert [s.module for s in sites] == expected * layers
    assert [s.layer for s in sites] == [layer for layer in range(layers) for _ in expected]
    assert all("lm_head" not in s.path and "embed" not in s.path for s in sites)
    if build is _gpt2:
        assert [s.width for s in sites[:4]] == [48, 16, 64, 16]
    elif build is _opt:
        assert [s.width for s in sites[:6]] == [16, 16, 16, 16, 24, 16]
    else:
        assert [s.width for s in sites[:7]] == [16, 8, 8, 16, 24, 24, 16]


def test_a_model_without_blocks_is_a_clear_error():
    class Flat(torch.nn.Module):
        config = LlamaConfig(num_hidden_layers=2)

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

    with pytest.raises(ArchitectureError, match="Flat: no list of 2 transformer blocks"):
        linear_sites(Flat())

    class Uncounted(Flat):
        config = PretrainedConfig()  # no num_hidden_layers, no n_layer

    with pytest.raises(ArchitectureError, match="Uncounted: its config gives no layer count"):
        linear_sites(Uncounted())


@pytest.mark.parametrize("build", [_llama, _qwen2, _gpt2, _opt])
def test_attribution_is_activation_times_gradient_of_the_answer_probability(build):
    model = build().double().eval()
    examples = _examples()
    batch = collate(examples, pad_id=0)
    sites = linear_sites(model)
    attributions, probability, positions = attribute_batch(model, batch, sites)
    for row, example in enumerate(examples):
        single = collate([example], pad_id=0)
        kept = {}
        handles = [module.register_forward_hook(_keeper(kept, site.path))
                   for site, module in sites]
        logits = model(input_ids=single["input_ids"]).logits
        for handle in handles:
            handle.remove()
        token_logp, _ = answer_token_logprobs(logits, single["labels"])
        answer_probability = token_logp.sum().exp()
        answer_probability.backward()
        length = len(example["input_ids"])
        assert torch.isclose(probability[row], answer_probability.detach())
        for (site, _), a in zip(sites, attributions, strict=True):
            h = kept[site.path]
            expected = (h.detach() * h.grad).reshape(1, length, -1)[0]
            assert torch.allclose(a[row, :length].double(), expected, atol=1e-12), site.path
        model.zero_grad()
        answer_positions = [k for k in range(length - 1) if example["labels"][k + 1] != IGNORE]
        assert positions[row].nonzero().flatten().tolist() == answer_positions


def test_gradient_of_p_is_p_times_gradient_of_log_p_and_matches_finite_differences():
    model = _llama().double().eval()
    batch = collate(_examples()[:1], pad_id=0)
    _, module = linear_sites(model)[4]
    bump = {"value": 0.0}

    def perturb(_module, _inputs, output):
        output = output.clone()
        output[0, 3, 2] += bump["value"]
        return output

    def answer_logp():
        token_logp, _ = answer_token_logprobs(model(input_ids=batch["input_ids"]).logits,
                                              batch["labels"])
        return token_logp.sum()

    kept = []
    handle = module.register_forward_hook(_keeper(kept))
    answer_logp().exp().backward()
    grad_p = kept[0].grad[0, 3, 2].item()
    kept.clear()
    logp = answer_logp()
    logp.backward()
    grad_logp = kept[0].grad[0, 3, 2].item()
    handle.remove()
    assert grad_p == pytest.approx(logp.exp().item() * grad_logp, rel=1e-10)
    handle = module.register_forward_hook(perturb)
    eps = 1e-3
    with torch.no_grad():
        bump["value"] = eps
        up = answer_logp().exp().item()
        bump["value"] = -eps
        down = answer_logp().exp().item()
    handle.remove()
    assert (up - down) / (2 * eps) == pytest.approx(grad_p, rel=1e-2)


def test_neuron_attribution_summarises_max_and_min_over_answer_positions(tmp_path):
    model = _llama()
    examples = _examples()
    result = neuron_attribution(model, examples, pad_id=0, batch_size=2)
    n_neurons = sum(site.width for site in result.sites)
    assert result.maxima.shape == result.minima.shape == (len(examples), n_neurons)
    assert (result.maxima >= result.minima).all()
    batch = collate(examples, pad_id=0)
    attributions, _, positions = attribute_batch(model, batch, linear_sites(model))
    first = attributions[0][1][positions[1]]
    assert torch.allclose(result.maxima[1, :16], first.amax(dim=0))
    assert torch.allclose(result.minima[1, :16], first.amin(dim=0))
    result.save(tmp_path / "a.pt")
    again = NeuronAttribution.load(tmp_path / "a.pt")
    assert torch.equal(again.maxima, result.maxima) and again.sites == result.sites
    frozen = neuron_attribution(model.requires_grad_(False), examples, pad_id=0, batch_size=2)
    assert torch.allclose(frozen.maxima, result.maxima) and torch.allclose(frozen.minima,
                                                                         result.minima)
    net = net_attribution(model, examples, pad_id=0, batch_size=2)
    assert torch.allclose(net, (result.maxima + result.minima).mean(dim=0))


def test_d_plus_and_d_minus_on_hand_computed_values():
    sites = linear_sites(_llama())[0:1]
    site = sites[0][0]
    base = NeuronAttribution(torch.tensor([[2.0, 1.0, 3.0], [4.0, 0.5, 0.0]]),
                             torch.tensor([[-1.0, 0.0, -3.0], [-1.0, -0.5, 0.0]]), [site])
    after = NeuronAttribution(torch.tensor([[-3.0, 2.0, 0.0], [1.0, 1.5, 2.0]]),
                              torch.tensor([[-5.0, -0.5, 0.0], [-2.0, 1.0, -2.0]]), [site])
    shift = attribution_shift(base, after)
    # D+: mean(2 - 0, 4 - 1) = 2.5 ; mean(1 - 2, 0.5 - 1.5) = -1 -> 0 ;
    #     mean(3 - 0, 0 - 2) = 0.5 (the clip comes after the mean: not (3 + 0) / 2)
    assert shift.d_plus.tolist() == [2.5, 0.0, 0.5]
    # D-: mean(-1 + 5, -1 + 2) = 2.5 ; mean(0 + 0.5, -0.5 - 1) = -0.5 -> 0 ;
    #     mean(-3 - 0, 0 + 2) = -0.5 -> 0
    assert shift.d_minus.tolist() == [2.5, 0.0, 0.0]
    d_plus, d_minus = shift.curves()
    assert d_plus.tolist() == [2.5, 3.0, 3.0] and d_minus.tolist() == [2.5, 2.5, 2.5]
    assert shift.top_sums(1) == (2.5, 2.5)
    with pytest.raises(ArchitectureError, match="attributions differ in shape"):
        attribution_shift(base, NeuronAttribution(torch.zeros(3, 3), torch.zeros(3, 3), [site]))


def test_most_hiding_site_is_none_when_no_site_hides():
    assert most_hiding_site({(0, "mlp.up_proj"): (0.5, 0.0),
                             (1, "self_attn.q_proj"): (0.0, 0.0)}) == "none"
    assert most_hiding_site({(0, "mlp.up_proj"): (0.5, 0.2),
                             (1, "self_attn.q_proj"): (0.3, 0.3)}) == "none"
    assert most_hiding_site({(0, "mlp.up_proj"): (0.5, 0.9), (1, "self_attn.q_proj"): (0.0, 0.3),
                             (2, "mlp.down_proj"): (0.0, 0.1)}) == "layer 0 mlp.up_proj"
