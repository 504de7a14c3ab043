"""params.yaml is validated before anything runs, naming the file and the dotted field."""

import shutil
from pathlib import Path

import pytest
import yaml

from ssiuu.cli import main as cli
from ssiuu.config.errors import ParamsError
from ssiuu.config.params import load_params, parse_params, read_yaml

REPO = Path(__file__).parents[1]


def _default() -> dict:
    return read_yaml(REPO / "params.yaml")


def test_shipped_params_and_profiles_are_valid(tmp_path):
    load_params(REPO / "params.yaml")
    for profile in sorted((REPO / "profiles").glob("*.yaml")):
        target = tmp_path / f"{profile.stem}.yaml"
        target.write_text((REPO / "params.yaml").read_text())
        assert cli(["profile", str(profile), "--params", str(target)]) == 0
        load_params(target)


@pytest.mark.parametrize("path, value, expected", [
    (("base", "train", "lr"), -1.0, "base.train.lr: Input should be greater than 0"),
    (("base", "train", "steps"), "many", "base.train.steps: Input should be a valid integer"),
    (("base", "train", "learning_rate"), 0.1, "base.train.learning_rate: unknown parameter"),
    (("data", "source"), "csv", "data.source: Input should be 'generated', 'jsonl' or 'hf'"),
    (("data", "generator", "attributes"), ["shoe_size"], "data.generator.attributes.0"),
    (("oracle", "splits"), ["forget", "retain"], "oracle.splits must not contain 'forget'"),
    (("model", "scratch", "num_attention_heads"), 3, "multiple of num_attention_heads"),
    (("unlearn", "methods"), ["gd", "klue"], "unlearn.methods.1: Input should be 'ga', 'gd'"),
    (("unlearn", "methods"), ["gd", "gd"], "unlearn.methods: Value error, must not repeat"),
    (("unlearn", "train", "lrs"), [1e-3, 0.0], "unlearn.train.lrs.1: Input should be greater"),
    (("relearn", "train", "lrs"), [1e-4, 1e-4], "relearn.train.lrs: Value error, must not"),
    (("relearn", "attacks"), ["benign", "benign"], "relearn.attacks: Value error, must not"),
    (("relearn", "train", "lrs"), [1e-4, 1.0000001e-4], "must differ within 6 significant"),
    (("unlearn", "losses", "ssiuu", "lam"), -1, "unlearn.losses.ssiuu.lam: Input should be"),
    (("unlearn", "losses", "gd", "lam"), 0.1, "unlearn.losses.gd.lam: unknown parameter"),
    (("unlearn", "losses", "ssiuu", "penalised"), "mlp", "unlearn.losses.ssiuu.penalised"),
    (("unlearn", "losses", "ssiuu_npo", "grad"), "second_order",
     "unlearn.losses.ssiuu_npo.grad: Input should be 'first_order' or 'exact'"),
    (("unlearn", "losses", "npo", "grad"), "exact", "unlearn.losses.npo.grad: unknown parameter"),
    (("unlearn", "stop", "thresholds"), {"acc": "chance"}, "defined for metric 'mcq' only"),
    (("unlearn", "stop", "thresholds"), {"rouge": 0.2}, "unlearn.stop.thresholds.rouge"),
    (("seeds",), [0, 1, 0], "seeds: Value error, must not repeat"),
    (("tuning", "lams"), [0.0], "tuning.lams.0: Input should be greater than 0"),
    (("tuning", "modes"), ["second_order"], "tuning.modes.0: Input should be 'first_order'"),
    (("tuning", "seeds"), [100, 100], "tuning.seeds: Value error, must not repeat"),
    (("seeds",), [], "seeds: List should have at least 1 item"),
    (("seeds",), [-1], "seeds.0: Input should be greater than or equal to 0"),
    (("base", "seed"), 1, "base.seed: unknown parameter"),  # seeds are one list now
    (("data", "generator", "structure"), "random", "data.generator.structure: Input should be"),
    (("data", "generator", "n_groups"), 2, "data.generator.n_groups: Input should be greater"),
    (("relearn", "train", "lora"), {"r": 0}, "relearn.train.lora.r: Input should be greater"),
    (("relearn", "train", "lora"), {"rank": 4}, "relearn.train.lora.rank: unknown parameter"),
    (("relearn", "train", "lora"), {"target_modules": []}, "relearn.train.lora.target_modules"),
    (("relearn", "train", "lora"), {"dropout": 1.0}, "relearn.train.lora.dropout: Input should"),
])
def test_bad_param_is_named(path, value, expected):
    raw = _default()
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ParamsError) as info:
        parse_params(raw, source="params.yaml")
    assert "params.yaml" in str(info.value) and expected in str(info.value)


def test_lora_defaults_to_all_linear_layers():
    raw = _default()
    assert parse_params(raw).relearn.train.lora is None  # a full fine-tune by default
    raw["relearn"]["train"]["lora"] = {"r": 4}
    lora = parse_params(raw).relearn.train.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (4, 16.0, 0.0, "all-linear")


def test_missing_section_is_named():
    raw = _default()
    del raw["oracle"]
    with pytest.raises(ParamsError, match="params.yaml: oracle: Field required"):
        parse_params(raw)


def test_unreadable_params_file_is_named(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ParamsError, match="params.yaml: not valid YAML"):
        load_params(bad)
    assert cli(["check", "--params", str(bad)]) == 2


def test_profile_with_unknown_key_is_refused_and_params_untouched(tmp_path, capsys):
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    before = target.read_text()
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump({"base": {"train": {"stepz": 3}}}))
    assert cli(["profile", str(overlay), "--params", str(target)]) == 2
    assert "base.train.stepz: unknown parameter" in capsys.readouterr().err
    assert target.read_text() == before


def test_profile_may_add_a_section_params_yaml_lacks(tmp_path):
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    overlay = tmp_path / "mine.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"source": "jsonl",
                                                "jsonl": {"facts": "my/facts.jsonl"}}}))
    assert cli(["profile", str(overlay), "--params", str(target)]) == 0
    assert load_params(target).data.jsonl.facts == "my/facts.jsonl"


def test_profile_overlay_changes_only_its_keys(tmp_path):
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    assert cli(["profile", str(REPO / "profiles" / "tiny.yaml"), "--params", str(target)]) == 0
    merged = load_params(target)
    default = load_params(REPO / "params.yaml")
    assert merged.model.scratch.num_hidden_layers == 2
    assert merged.data.generator.n_people == default.data.generator.n_people
    assert merged.oracle.splits == default.oracle.splits
    assert "# Every knob" in target.read_text(), "comments survive the merge"


def test_profile_with_bad_value_leaves_params_untouched(tmp_path):
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    before = target.read_text()
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump({"base": {"train": {"lr": -1}}}))
    assert cli(["profile", str(overlay), "--params", str(target)]) == 2
    assert target.read_text() == before


def test_profile_writes_small_floats_that_every_yaml_reader_reads_as_floats(tmp_path):
    """ruamel writes 3e-05, a string to PyYAML (YAML 1.1); the profile writes 3.0e-05."""
    target = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", target)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("relearn:\n  train:\n    lrs: [3.0e-5, 1.0e-4, 0.5]\n", encoding="utf-8")
    assert cli(["profile", str(overlay), "--params", str(target)]) == 0
    assert read_yaml(target)["relearn"]["train"]["lrs"] == [3.0e-5, 1.0e-4, 0.5]


def test_rmu_on_a_block_the_scratch_model_lacks_is_refused_before_any_model():
    raw = _default()
    raw["unlearn"]["methods"] = ["gd", "rmu"]
    raw["unlearn"]["losses"]["rmu"]["layer"] = 4
    with pytest.raises(ParamsError, match=r"unlearn.losses.rmu: block 4 does not exist: the "
                                          r"scratch model has 4 \(model.scratch.num_hidden"):
        parse_params(raw)
    raw["unlearn"]["losses"]["rmu"]["layer"] = 3
    assert parse_params(raw).unlearn.losses.rmu.layer == 3
