"""The method catalogue: the one list of methods, and everything that reads it agrees."""

import subprocess
import sys

import pytest
import yaml
from projects import REPO
from pydantic import ValidationError

from ssiuu.config.catalog import (
    CATALOG,
    METHODS,
    gradient_modes,
    method_spec,
    regularised_pairs,
)
from ssiuu.config.params import METHODS as PARAMS_METHODS
from ssiuu.config.params import LossesParams
from ssiuu.data.encoding import encode_rows
from ssiuu.unlearning.methods.npo import REFERENCE_KEY, with_reference_logprobs
from ssiuu.unlearning.methods.objective import build_objective


def test_methods_keep_their_order_everywhere():
    assert METHODS == ("ga", "gd", "npo", "dpo", "rmu", "ssiuu", "ssiuu_exact", "ssiuu_ga",
                       "ssiuu_npo")
    assert PARAMS_METHODS == METHODS


def test_params_yaml_sets_every_method_s_knobs():
    """DVC's `-S unlearn.losses.<m>.<knob>=...` and a stage's `unlearn.losses.<m>` param
    need the key in params.yaml: a method absent there cannot be swept or run."""
    losses = yaml.safe_load((REPO / "params.yaml").read_text())["unlearn"]["losses"]
    assert list(losses) == list(CATALOG)


def test_losses_params_has_one_field_per_method_typed_by_its_knobs():
    fields = LossesParams.model_fields
    assert list(fields) == list(CATALOG)
    for name, spec in CATALOG.items():
        assert fields[name].annotation is spec.knobs


@pytest.mark.parametrize("spec", CATALOG.values(), ids=list(CATALOG))
def test_each_method_has_the_knobs_of_its_terms(spec):
    knobs = set(spec.knobs.model_fields)
    assert ("alpha" in knobs) == (spec.retain is not None)
    assert ("steering" in knobs) == (spec.forget == "rmu") == (spec.retain == "activations")
    assert ("beta" in knobs) == (spec.forget in ("npo", "dpo"))
    assert ("refusal" in knobs) == (spec.forget == "dpo")
    assert ("lam" in knobs) == ("penalised" in knobs) == (spec.regulariser == "attribution")
    assert (spec.base is not None) == (spec.regulariser is not None)


def test_each_regularised_method_names_its_gradient_modes():
    assert gradient_modes("ssiuu") == ("first_order", "exact")
    assert gradient_modes("ssiuu_exact") == ("exact",)
    assert gradient_modes("gd") == ()
    with pytest.raises(ValidationError, match="Input should be 'exact'"):
        CATALOG["ssiuu_exact"].knobs(grad="first_order")


def test_a_regularised_method_is_its_base_plus_the_regulariser():
    assert regularised_pairs() == {"ssiuu": "gd", "ssiuu_exact": "gd", "ssiuu_ga": "ga",
                                   "ssiuu_npo": "npo"}
    for name, base in regularised_pairs().items():
        spec, plain = CATALOG[name], CATALOG[base]
        assert (spec.forget, spec.retain) == (plain.forget, plain.retain)
        assert plain.regulariser is None and plain.base is None


@pytest.mark.parametrize("method", METHODS)
def test_build_objective_follows_the_spec(trained_tiny, method):
    spec = method_spec(method)
    losses = LossesParams.model_validate({"rmu": {"layer": 1}})  # the tiny model has 2 blocks
    knobs = getattr(losses, method)
    objective = build_objective(method, losses, *trained_tiny[:2])
    assert objective.forget == spec.forget
    assert objective.needs_retain == (spec.retain is not None)
    assert objective.alpha == (knobs.alpha if spec.retain is not None else None)
    assert (objective.steering is not None) == (spec.forget == "rmu")
    assert (objective.regulariser is not None) == (spec.regulariser == "attribution")
    if spec.forget in ("npo", "dpo"):
        assert objective.beta == knobs.beta


def test_the_catalog_and_params_load_no_torch():
    code = ("import sys, ssiuu.config.catalog, ssiuu.config.params; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_unknown_method_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown unlearning method 'klue'; known: ga, gd, npo, "
                                         "dpo, rmu, ssiuu, ssiuu_exact, ssiuu_ga, ssiuu_npo"):
        method_spec("klue")


def test_prepare_attaches_the_reference_for_npo_only(trained_tiny, tiny_facts):
    model, tokenizer, _ = trained_tiny
    pad = tokenizer.pad_token_id
    examples = encode_rows(tokenizer, tiny_facts[:6], 32)
    npo = build_objective("npo", LossesParams(), model).prepare(model, examples, pad, 4)
    assert npo == with_reference_logprobs(model, examples, pad, 4)
    assert all(REFERENCE_KEY in example for example in npo)
    assert not any(REFERENCE_KEY in example for example in examples)
    ga = build_objective("ga", LossesParams(), model)
    assert ga.prepare(model, examples, pad, 4) is examples
