"""Shared fixtures: offline settings, a tiny data set and a small model trained on it."""

from __future__ import annotations

import os

import pytest

from ssiuu.model.runtime import OFFLINE_DEFAULTS

for key, value in OFFLINE_DEFAULTS.items():
    os.environ.setdefault(key, value)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # two test workers share two cores

# The end-to-end modules, longest first. With `--no-loadscope-reorder` (pyproject) the two
# xdist workers take whole modules in collection order, so the long runs start at once and
# the unit tests fill the gaps (xdist's own order, most tests first, left them to the end).
LONGEST_FIRST = ("test_pipeline_e2e.py", "test_flows.py", "test_flow_sweep.py",
                 "test_scale.py", "test_deployments.py", "test_input_tracking.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the modules of :data:`LONGEST_FIRST` first, in that order (a stable sort: the
    order within a module and among the other modules is kept)."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def tiny_facts():
    """A small generated data set: 8 people x 2 attributes plus utility rows."""
    from ssiuu.config.params import GeneratorParams
    from ssiuu.data.generator import generate_people_facts, generate_utility

    gen = GeneratorParams(n_people=8, attributes=["birth_city", "employer"], n_countries=4,
                          n_arithmetic=4, n_benign=8)
    return generate_people_facts(gen) + generate_utility(gen)


@pytest.fixture(scope="session")
def trained_tiny(tiny_facts):
    """A 2-layer scratch Llama that has memorised ``tiny_facts`` (about 2 s on 2 cores)."""
    import torch

    from ssiuu.config.params import (
        ModelParams,
        ModelTrainingParams,
        ScratchModelParams,
        TrainParams,
    )
    from ssiuu.model.finetune import corpus, train_on_splits
    from ssiuu.model.loading import build_scratch_model, train_scratch_tokenizer

    torch.set_num_threads(1)
    tokenizer = train_scratch_tokenizer(corpus({"facts": tiny_facts}), 400)
    model_params = ModelParams(max_length=32, scratch=ScratchModelParams(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2))
    model = build_scratch_model(model_params, tokenizer, seed=0)
    recipe = ModelTrainingParams(splits=["retain"], train=TrainParams(
        steps=250, batch_size=16, lr=5e-3, log_every=50))
    result = train_on_splits(model, tokenizer, {"retain": tiny_facts}, recipe, 32, desc="tiny")
    return model, tokenizer, result


@pytest.fixture()
def blank_model_dir(trained_tiny, tmp_path):
    """An untrained scratch model sharing the tiny tokenizer: it knows no fact."""
    from ssiuu.config.params import ModelParams, ScratchModelParams
    from ssiuu.model.loading import build_scratch_model, save_model

    _, tokenizer, _ = trained_tiny
    params = ModelParams(max_length=32, scratch=ScratchModelParams(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1))
    return save_model(build_scratch_model(params, tokenizer, seed=0), tokenizer,
                      tmp_path / "blank")
