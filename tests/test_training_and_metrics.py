"""The shared training loop and the three scores, on a real (tiny) Llama."""

import itertools
import math

import pytest
import torch

from ssiuu.config.errors import DataError
from ssiuu.config.params import ModelParams, ScratchModelParams, TrainParams
from ssiuu.data.encoding import IGNORE, PROMPT, encode, encode_rows
from ssiuu.model.loading import build_scratch_model, train_scratch_tokenizer
from ssiuu.model.training import make_loader, nll_loss, train
from ssiuu.scoring.metrics import evaluate_rows, score_examples

SMALL = ModelParams(max_length=32, scratch=ScratchModelParams(
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
    num_key_value_heads=2))


def test_encode_masks_the_prompt_and_ends_with_eos(trained_tiny, tiny_facts):
    _, tokenizer, _ = trained_tiny
    example = encode(tokenizer, tiny_facts[0]["question"], tiny_facts[0]["answer"], 32)
    prompt_len = len(tokenizer(PROMPT.format(question=tiny_facts[0]["question"])).input_ids)
    assert example["labels"][:prompt_len] == [IGNORE] * prompt_len
    assert example["labels"][prompt_len:] == example["input_ids"][prompt_len:]
    assert example["input_ids"][-1] == tokenizer.eos_token_id
    with pytest.raises(DataError, match=r"row p0000-birth_city: \d+ tokens exceed "
                                        r"model.max_length=6"):
        encode_rows(tokenizer, tiny_facts[:1], 6)
    # token ids are remembered per tokenizer, each example is its own: a caller may change it
    example["input_ids"].append(0)
    again = encode(tokenizer, tiny_facts[0]["question"], tiny_facts[0]["answer"], 32)
    assert again["input_ids"] == example["input_ids"][:-1]
    other = train_scratch_tokenizer([tiny_facts[0]["question"]], 300)
    assert encode(other, tiny_facts[0]["question"], tiny_facts[0]["answer"], 99)["input_ids"] \
        == [*other(PROMPT.format(question=tiny_facts[0]["question"])).input_ids,
            *other(" " + tiny_facts[0]["answer"], add_special_tokens=False).input_ids,
            other.eos_token_id]


def test_base_training_memorises_the_facts(trained_tiny, tiny_facts):
    model, tokenizer, result = trained_tiny
    assert result.steps == 250
    assert result.history[-1]["loss"] < 0.1 * result.history[0]["loss"]
    scores = evaluate_rows(model, tokenizer, tiny_facts, 32)
    assert scores["acc"] >= 0.95 and scores["mcq"] >= 0.95 and scores["logprob"] > -0.1


def test_untrained_model_scores_near_nothing(tiny_facts):
    tokenizer = train_scratch_tokenizer(
        [PROMPT.format(question=r["question"]) + " " + r["answer"] for r in tiny_facts], 400)
    model = build_scratch_model(SMALL, tokenizer, seed=0)
    scores = evaluate_rows(model, tokenizer, tiny_facts, 32)
    assert scores["acc"] == 0.0
    assert scores["logprob"] < math.log(1 / 10)
    assert scores["n"] == len(tiny_facts)


def test_greedy_match_equals_generate(trained_tiny, tiny_facts):
    model, tokenizer, _ = trained_tiny
    untrained = build_scratch_model(SMALL, tokenizer, seed=1)
    for candidate in (model, untrained):
        examples = encode_rows(tokenizer, tiny_facts[:6], 32)
        scores = score_examples(candidate, examples, tokenizer.pad_token_id)
        for row, example, score in zip(tiny_facts[:6], examples, scores, strict=True):
            prompt = torch.tensor([tokenizer(PROMPT.format(question=row["question"])).input_ids])
            generated = candidate.generate(prompt, max_new_tokens=len(example["input_ids"]),
                                           do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                           eos_token_id=tokenizer.eos_token_id)
            answer = generated[0, prompt.shape[1]:].tolist()
            gold = example["input_ids"][prompt.shape[1]:]
            assert score.greedy_match == (answer[:len(gold)] == gold)


def test_logprob_matches_a_direct_computation(trained_tiny, tiny_facts):
    model, tokenizer, _ = trained_tiny
    example = encode(tokenizer, tiny_facts[3]["question"], tiny_facts[3]["answer"], 32)
    [score] = score_examples(model, [example], tokenizer.pad_token_id)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([example["input_ids"]])).logits[0], -1)
    expected = sum(float(logp[pos - 1, tok]) for pos, tok in enumerate(example["labels"])
                   if tok != IGNORE)
    assert score.logprob_sum == pytest.approx(expected, abs=1e-4)
    assert score.n_tokens == sum(t != IGNORE for t in example["labels"])
    padded = score_examples(model, [example, encode(tokenizer, "x", "y " * 5, 32)],
                            tokenizer.pad_token_id)
    assert padded[0].logprob_sum == pytest.approx(score.logprob_sum, abs=1e-4)


def test_mcq_is_right_when_the_model_prefers_the_truth(trained_tiny, tiny_facts):
    model, tokenizer, _ = trained_tiny
    swapped = [{**r, "answer": r["distractors"][0], "distractors": [r["answer"],
                                                                    r["distractors"][1]]}
               for r in tiny_facts]
    assert evaluate_rows(model, tokenizer, tiny_facts, 32)["mcq"] >= 0.95
    assert evaluate_rows(model, tokenizer, swapped, 32)["mcq"] <= 0.05
    no_options = [{**r, "distractors": []} for r in tiny_facts]
    assert "mcq" not in evaluate_rows(model, tokenizer, no_options, 32)
    with pytest.raises(ValueError, match="empty split"):
        evaluate_rows(model, tokenizer, [], 32)


def _run(tokenizer, examples, seed, steps=20, stop=None):
    model = build_scratch_model(SMALL, tokenizer, seed=0)
    loader = make_loader(examples, 8, tokenizer.pad_token_id, seed)
    result = train(model, {"train": loader}, nll_loss,
                   TrainParams(steps=steps, lr=3e-3, log_every=5), seed, should_stop=stop)
    return model, result


def test_training_is_seeded_and_stoppable(trained_tiny, tiny_facts):
    _, tokenizer, _ = trained_tiny
    examples = encode_rows(tokenizer, tiny_facts, 32)
    first, log = _run(tokenizer, examples, seed=5)
    again, _ = _run(tokenizer, examples, seed=5)
    other, _ = _run(tokenizer, examples, seed=6)
    pairs = list(zip(first.parameters(), again.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters(),
                                                     strict=True))
    assert [entry["step"] for entry in log.history] == [5, 10, 15, 20]
    assert {"loss", "lr", "nll"} <= set(log.history[0])
    _, stopped = _run(tokenizer, examples, seed=5, stop=lambda step, _model: step == 7)
    assert stopped.steps == 7 and stopped.stopped_early


def test_a_bfloat16_model_trains_on_float32_master_weights(trained_tiny, tiny_facts):
    model, tokenizer, _ = trained_tiny
    examples = encode_rows(tokenizer, tiny_facts, 32)
    start = {name: p.detach().to(torch.bfloat16) for name, p in model.named_parameters()}
    steps = TrainParams(steps=30, lr=2e-5, schedule="constant", warmup_ratio=0.0,
                        log_every=30)

    def fresh():
        copy = build_scratch_model(ModelParams(max_length=32, scratch=ScratchModelParams(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2)), tokenizer, 0)
        copy.load_state_dict(start, strict=False)  # lm_head is tied to the embeddings
        return copy.to(torch.bfloat16)

    def changed(trained):
        moved = [float((p.detach() != start[name]).float().mean())
                 for name, p in trained.named_parameters() if p.ndim == 2]
        return sum(moved) / len(moved)

    ours = fresh()
    seen_dtypes = []
    train(ours, {"train": make_loader(examples, 16, tokenizer.pad_token_id, 0)}, nll_loss,
          steps, seed=0, should_stop=lambda _s, m: seen_dtypes.append(
              next(m.parameters()).dtype) or False)
    # The failure it prevents: AdamW on the bf16 weights themselves, whose updates of
    # about lr = 2e-5 per step fall below bf16's rounding of weights near 0.05.
    plain = fresh()
    optimiser = torch.optim.AdamW(plain.parameters(), lr=2e-5)
    loader = make_loader(examples, 16, tokenizer.pad_token_id, 0)
    for batch in itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)),
                                  30):
        optimiser.zero_grad()
        nll_loss(plain, {"train": batch})[0].backward()
        optimiser.step()
    assert all(p.dtype == torch.bfloat16 for p in ours.parameters())
    assert set(seen_dtypes) == {torch.float32}  # the master weights while it trains
    assert changed(ours) > 3 * changed(plain)
