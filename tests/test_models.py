"""Model and tokenizer build / save / load, and clear errors for unknown model sources."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ssiuu.config.errors import ModelSourceError
from ssiuu.config.params import ModelParams, ScratchModelParams
from ssiuu.config.sources import resolve_model_source
from ssiuu.model.finetune import corpus
from ssiuu.model.loading import (
    build_scratch_model,
    load_model,
    load_saved,
    load_tokenizer,
    save_model,
    train_scratch_tokenizer,
    unseen_tokens,
)

SMALL = ModelParams(scratch=ScratchModelParams(hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=2,
                                               num_key_value_heads=1))


def test_scratch_tokenizer_covers_corpus_and_splits_digits(tiny_facts):
    tokenizer = train_scratch_tokenizer(corpus({"facts": tiny_facts}), 400)
    for row in tiny_facts:
        ids = tokenizer(f"Question: {row['question']} {row['answer']}").input_ids
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.unk_token_id not in ids
    assert tokenizer.unk_token_id in tokenizer("Жук").input_ids  # letters of no fact
    assert tokenizer.unk_token_id not in tokenizer("Qwertyuiop").input_ids  # pieces
    assert tokenizer(" 1974", add_special_tokens=False).input_ids[-4:] == [
        tokenizer.convert_tokens_to_ids(d) for d in "1974"]
    text = f"Question: {tiny_facts[0]['question']}\nAnswer: {tiny_facts[0]['answer']}"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text


def test_a_word_only_the_forget_set_holds_is_made_of_trained_pieces(tiny_facts):
    forgotten = tiny_facts[0]["subject"]
    kept = [row for row in tiny_facts if row.get("subject") != forgotten]
    forget = [row for row in tiny_facts if row.get("subject") == forgotten]
    kept_text, forget_text = corpus({"kept": kept}), corpus({"forget": forget})
    only_forget = ({w for t in forget_text for w in t.split()}
                   - {w for t in kept_text for w in t.split()})
    assert only_forget  # the forgotten person's name, at least
    tokenizer = train_scratch_tokenizer(kept_text, 150, alphabet_texts=forget_text)
    vocabulary = tokenizer.get_vocab()
    for word in only_forget:
        assert word not in vocabulary
        assert tokenizer.unk_token not in tokenizer.tokenize(word)
    unseen, total = unseen_tokens(tokenizer, forget_text, kept_text)
    assert total > 0 and unseen == 0


def test_scratch_tokenizer_training_is_the_same_in_every_process(tiny_facts, tmp_path):
    corpus_file = tmp_path / "corpus.json"
    corpus_file.write_text(json.dumps(corpus({"facts": tiny_facts})))
    script = ("import json, sys; from ssiuu.model.loading import train_scratch_tokenizer; "
              "texts = json.load(open(sys.argv[1])); "
              "print(train_scratch_tokenizer(texts, 150).backend_tokenizer.to_str())")
    runs = {subprocess.run([sys.executable, "-c", script, str(corpus_file)], check=True,
                           capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
            for seed in (1, 2)}  # two string-hash orders, as two processes may have
    assert len(runs) == 1


def test_scratch_model_is_seeded():
    tokenizer = train_scratch_tokenizer(["a b c d"], 400)
    first = build_scratch_model(SMALL, tokenizer, seed=3)
    again = build_scratch_model(SMALL, tokenizer, seed=3)
    other = build_scratch_model(SMALL, tokenizer, seed=4)
    weights = [p for p in first.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(weights, again.state_dict().values(),
                                                 strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(weights, other.state_dict().values(),
                                                     strict=True))
    assert first.config.num_hidden_layers == 2 and first.config.num_key_value_heads == 1


def test_save_load_round_trip(tmp_path, tiny_facts):
    tokenizer = train_scratch_tokenizer(corpus({"facts": tiny_facts}), 400)
    model = build_scratch_model(SMALL, tokenizer, seed=0)
    save_model(model, tokenizer, tmp_path / "m")
    loaded, loaded_tokenizer = load_saved(tmp_path / "m")
    text = "Question: " + tiny_facts[0]["question"]
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert loaded_tokenizer(text).input_ids == ids[0].tolist()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    reloaded = load_model(str(tmp_path / "m"))
    assert type(reloaded).__name__ == "LlamaForCausalLM"
    assert load_tokenizer(str(tmp_path / "m")).pad_token_id == tokenizer.pad_token_id


@pytest.mark.parametrize("name, expected", [
    ("no-such-org/no-such-model", "not 'scratch', a local folder"),
    ("package:no_such_package_xyz", "package 'no_such_package_xyz' is not installed"),
    ("./missing/dir", "is not a model folder"),
])
def test_unknown_model_source_is_named(monkeypatch, name, expected):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError) as info:
        resolve_model_source(name)
    assert "model.name" in str(info.value) and expected in str(info.value)


def test_load_saved_without_model_is_named(tmp_path):
    with pytest.raises(ModelSourceError, match="config.json missing"):
        load_saved(tmp_path)


def test_any_local_causal_lm_trains_and_scores(tmp_path, tiny_facts):
    """A GPT-2 family model given by folder path goes through the same recipe and metrics."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from ssiuu.config.params import ModelTrainingParams, TrainParams
    from ssiuu.model.finetune import initial_model, train_on_splits
    from ssiuu.scoring.metrics import evaluate_rows

    tokenizer = train_scratch_tokenizer(corpus({"facts": tiny_facts}), 400)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2,
                        n_positions=64, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    save_model(GPT2LMHeadModel(config), tokenizer, tmp_path / "gpt2-tiny")
    params = ModelParams(name=str(tmp_path / "gpt2-tiny"), max_length=32)
    model = initial_model(params, tokenizer, seed=0)
    assert type(model).__name__ == "GPT2LMHeadModel"
    before = evaluate_rows(model, tokenizer, tiny_facts, 32)["logprob"]
    recipe = ModelTrainingParams(splits=["retain"], train=TrainParams(
        steps=30, batch_size=16, lr=3e-3))
    train_on_splits(model, tokenizer, {"retain": tiny_facts}, recipe, 32, desc="gpt2")
    assert evaluate_rows(model, tokenizer, tiny_facts, 32)["logprob"] > before + 1.0
