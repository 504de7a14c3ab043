"""Stage CLIs fail with exit code 2 and a message naming the file and the field."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).parents[1]


def _stage(cwd: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=cwd,
                          env=env, capture_output=True, text=True)


def _workspace(tmp_path: Path, **changes) -> Path:
    shutil.copytree(REPO / "data" / "requests", tmp_path / "data" / "requests")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_wrong_param_fails_prepare_naming_the_field(tmp_path):
    work = _workspace(tmp_path, data__generator__n_people=2)
    done = _stage(work, "prepare.py")
    assert done.returncode == 2
    assert "params.yaml: data.generator.n_people: Input should be greater than or equal to 4" \
        in done.stderr
    assert not (work / "data" / "prepared").exists()


def test_unknown_model_name_fails_before_any_model(tmp_path):
    work = _workspace(tmp_path, model__name="acme/does-not-exist")
    assert _stage(work, "prepare.py").returncode == 0
    done = _stage(work, "pretrained.py")
    assert done.returncode == 2
    assert "model.name: 'acme/does-not-exist' is not 'scratch'" in done.stderr
    assert not (work / "models").exists()


def test_unlearn_without_oracle_metrics_fails_before_any_model(tmp_path):
    work = _workspace(tmp_path, unlearn__stop__rule="threshold",
                      unlearn__train__forget_floor=None,
                      unlearn__train__forget_token_floor=None)
    done = _stage(work, "unlearn.py", "gd")
    assert done.returncode == 2
    assert "unlearn.stop.thresholds.acc: 'oracle' needs forget_acc in metrics/oracle.json" \
        in done.stderr
    assert not (work / "models").exists()


def test_the_reference_stop_without_a_stop_slice_fails_naming_it_before_any_model(tmp_path):
    work = _workspace(tmp_path, data__generator__n_stop_people=0)
    assert _stage(work, "prepare.py").returncode == 0
    done = _stage(work, "unlearn.py", "gd")
    assert done.returncode == 2
    assert ("unlearn.stop.rule: 'reference', unlearn.train.forget_floor: 'stop_slice' and "
            "unlearn.train.forget_token_floor need the stop slice data/prepared/stop.jsonl"
            in done.stderr), done.stderr
    assert not (work / "models").exists()


def test_unlearn_rejects_an_unknown_method(tmp_path):
    done = _stage(_workspace(tmp_path), "unlearn.py", "klue")
    assert done.returncode == 2 and "invalid choice: 'klue'" in done.stderr


def test_relearn_rejects_an_unknown_attack_before_any_model(tmp_path):
    done = _stage(_workspace(tmp_path), "relearn.py", "gd", "harmful_150")
    assert done.returncode == 2
    assert "relearn stage: unknown attack 'harmful_150'" in done.stderr


def test_wrong_relearn_param_names_the_field(tmp_path):
    work = _workspace(tmp_path, relearn__attacks=["harmful_10", "rewrite"])
    done = _stage(work, "relearn.py", "gd", "benign")
    assert done.returncode == 2
    assert "params.yaml: relearn.attacks.1: String should match pattern" in done.stderr


def test_unlearn_fails_naming_the_seed_the_oracle_metrics_lack(tmp_path):
    work = _workspace(tmp_path, seeds=[0, 7], unlearn__stop__rule="threshold",
                      unlearn__train__forget_floor=None,
                      unlearn__train__forget_token_floor=None)
    (work / "metrics").mkdir()
    (work / "metrics" / "oracle.json").write_text(
        '{"mean": {}, "std": {}, "seeds": {"0": {"forget_acc": 0.0}}}')
    done = _stage(work, "unlearn.py", "gd")
    assert done.returncode == 2
    assert "metrics/oracle.json: no record for seed 7" in done.stderr
    assert not (work / "models").exists()


def test_relearn_fails_naming_a_missing_seed_model(tmp_path):
    work = _workspace(tmp_path, seeds=[3])
    (work / "models" / "unlearned" / "gd" / "seed_0").mkdir(parents=True)
    done = _stage(work, "relearn.py", "gd", "benign")
    assert done.returncode == 2
    assert "models/unlearned/gd/seed_3: not found (seed 3 of params.yaml `seeds`" in done.stderr


def test_prepare_on_a_facts_file_with_an_invalid_byte_names_file_and_line(tmp_path):
    work = _workspace(tmp_path, data__source="jsonl", data__jsonl={"facts": "facts.jsonl"})
    (work / "facts.jsonl").write_bytes(b'{"id": "f1", "question": "Q?", "answer": "A"}\n'
                                       b'{"id": "f2", "question": "Q\xff?", "answer": "B"}\n')
    done = _stage(work, "prepare.py")
    assert done.returncode == 2
    assert "facts.jsonl:2: not valid UTF-8 (byte 0xff at column 28)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (work / "data" / "prepared").exists()
