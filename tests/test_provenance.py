"""Each model's provenance record: what made it, including the floating-point environment."""

from __future__ import annotations

import json
import platform

import torch

from ssiuu.records import provenance
from ssiuu.records.provenance import environment, read_provenance

MANIFEST = {"requests": [{"id": "req-0001"}],
            "splits": {"forget": {"sha256": "f" * 64}, "retain": {"sha256": "r" * 64}}}


def test_the_environment_names_the_numeric_packages_the_cpu_and_the_gpu():
    made_in = environment()
    assert made_in["packages"]["torch"] == torch.__version__
    assert set(made_in["packages"]) == set(provenance.PACKAGES)
    assert made_in["python"] == platform.python_version() and made_in["cpu"]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    assert made_in["gpu"] == gpu


def test_a_package_that_is_not_installed_is_recorded_as_none(monkeypatch):
    monkeypatch.setattr(provenance, "PACKAGES", ("torch", "no-such-package-ssiuu"))
    assert environment()["packages"] == {"torch": torch.__version__,
                                         "no-such-package-ssiuu": None}


def test_a_record_carries_its_environment_and_an_older_record_still_reads(tmp_path):
    record = provenance.provenance_of("unlearned", 0, model_source="scratch",
                                      splits=("forget",), params={}, manifest=MANIFEST,
                                      method="gd")
    provenance.write_provenance(record, tmp_path / "new")
    written = json.loads((tmp_path / "new" / "provenance.json").read_text())
    assert written["schema"] == 2 and written["environment"] == environment()
    assert read_provenance(tmp_path / "new") == record
    older = {key: value for key, value in written.items() if key != "environment"}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "provenance.json").write_text(json.dumps({**older, "schema": 1}))
    assert read_provenance(tmp_path / "old").environment == {}
