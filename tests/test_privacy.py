"""Membership inference: the attacks' scores, AUC with ties, on a real tiny model."""

import zlib

import pytest
import torch

from ssiuu.data.encoding import IGNORE, encode
from ssiuu.scoring.privacy import (
    ATTACKS,
    TokenStatistics,
    attack_scores,
    auc,
    membership_aucs,
    token_statistics,
)


def test_auc_counts_ties_half_and_reads_orientation():
    # 6 member/non-member pairs: 4 won, 2 tied -> (4 + 2 * 0.5) / 6
    assert auc([3.0, 2.0, 2.0], [2.0, 1.0]) == pytest.approx(5 / 6)
    assert auc([5.0, 4.0], [1.0, 0.0]) == 1.0
    assert auc([1.0, 0.0], [5.0, 4.0]) == 0.0
    assert auc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    with pytest.raises(ValueError, match="at least one member and one non-member"):
        auc([], [1.0])


def test_auc_is_sklearns_on_scores_with_ties():
    from sklearn.metrics import roc_auc_score

    generator = torch.Generator().manual_seed(0)
    for size in (5, 40, 300):
        members = torch.randint(0, 12, (size,), generator=generator).div(4).tolist()
        nonmembers = (torch.randint(0, 10, (size + 7,), generator=generator) / 4).tolist()
        labels = [1] * len(members) + [0] * len(nonmembers)
        assert auc(members, nonmembers) == pytest.approx(
            roc_auc_score(labels, members + nonmembers), abs=1e-12)


def test_attack_scores_on_hand_built_token_statistics():
    stats = TokenStatistics(logprobs=(-0.1, -2.0, -0.5), expected=(-1.0, -1.0, -0.5),
                            variance=(4.0, 1.0, 0.0))
    scores = attack_scores(stats, "Mirova", k=0.4)
    assert set(scores) == set(ATTACKS)
    assert scores["loss"] == pytest.approx(-2.6 / 3)
    assert scores["zlib"] == pytest.approx(-2.6 / len(zlib.compress(b"Mirova")))
    assert scores["min_k"] == pytest.approx(-2.0)  # int(3 * 0.4) = 1 lowest token
    # standardised: (0.9 / 2, -1.0 / 1, 0 / sqrt(1e-6)) -> the lowest is -1.0
    assert scores["min_k_plus_plus"] == pytest.approx(-1.0)
    assert attack_scores(stats, "Mirova", k=1.0)["min_k"] == pytest.approx(-2.6 / 3)


def test_token_statistics_match_a_direct_computation(trained_tiny, tiny_facts):
    model, tokenizer, _ = trained_tiny
    row = tiny_facts[2]
    [stats] = token_statistics(model, tokenizer, [row], 32)
    example = encode(tokenizer, row["question"], row["answer"], 32)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([example["input_ids"]])).logits[0], -1)
    positions = [pos - 1 for pos, tok in enumerate(example["labels"]) if tok != IGNORE]
    targets = [tok for tok in example["labels"] if tok != IGNORE]
    assert stats.logprobs == pytest.approx([float(logp[p, t]) for p, t in
                                            zip(positions, targets, strict=True)], abs=1e-5)
    mean = [float((logp[p].exp() * logp[p]).sum()) for p in positions]
    second = [float((logp[p].exp() * logp[p] ** 2).sum()) for p in positions]
    assert stats.expected == pytest.approx(mean, abs=1e-5)
    assert stats.variance == pytest.approx([s - m * m for s, m in zip(second, mean,
                                                                      strict=True)], abs=1e-4)
    batched = token_statistics(model, tokenizer, tiny_facts[:5], 32, batch_size=2)
    assert batched[2].logprobs == pytest.approx(stats.logprobs, abs=1e-5)


@pytest.fixture(scope="module")
def half_trained(tiny_facts):
    """A tiny Llama trained on the facts of people 0-3 only; people 4-7 it never saw."""
    from ssiuu.config.params import (
        ModelParams,
        ModelTrainingParams,
        ScratchModelParams,
        TrainParams,
    )
    from ssiuu.model.finetune import corpus, train_on_splits
    from ssiuu.model.loading import build_scratch_model, train_scratch_tokenizer

    people = [row for row in tiny_facts if row["subject"]]
    subjects = sorted({row["subject"] for row in people})
    seen = [row for row in people if row["subject"] in subjects[:4]]
    unseen = [row for row in people if row["subject"] in subjects[4:]]
    tokenizer = train_scratch_tokenizer(corpus({"facts": tiny_facts}), 400)
    model = build_scratch_model(ModelParams(max_length=32, scratch=ScratchModelParams(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2)), tokenizer, seed=0)
    recipe = ModelTrainingParams(splits=["retain"], train=TrainParams(
        steps=150, batch_size=8, lr=5e-3, log_every=50))
    train_on_splits(model, tokenizer, {"retain": seen}, recipe, 32, desc="half")
    return model, tokenizer, seen, unseen


def test_a_model_trained_on_some_facts_gives_them_away(half_trained):
    model, tokenizer, seen, unseen = half_trained
    aucs = membership_aucs(model, tokenizer, seen, unseen, 32, k=0.4)
    assert set(aucs) == set(ATTACKS)
    assert all(value >= 0.9 for value in aucs.values()), aucs
    swapped = membership_aucs(model, tokenizer, unseen, seen, 32, k=0.4)
    assert all(value == pytest.approx(1 - aucs[attack]) for attack, value in swapped.items())
