"""Params profiles: YAML overlays under ``profiles/`` merged into ``params.yaml``.

A profile holds only the keys it changes (``profiles/tiny.yaml`` for tests,
``profiles/smollm2.yaml`` for the real pretrained model). Applying one rewrites
``params.yaml`` in place, comments kept, so DVC sees ordinary param changes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

from ssiuu.config.params import parse_params, read_yaml


def _float_yaml_11(representer: Any, value: float) -> Any:
    """Write a float so that YAML 1.1 readers (PyYAML, hence :func:`read_yaml`) read a float:
    ruamel writes ``3e-05``, which they read as a string; ``3.0e-05`` is a float to both."""
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        text = text.replace("e", ".0e", 1)
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _merge(target: Any, overlay: dict[str, Any]) -> None:
    """Overlay ``overlay`` onto ``target`` in place; keys are checked by the schema after."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def apply_profile(profile: str | Path, params_path: str | Path = "params.yaml") -> None:
    """Merge the overlay ``profile`` into ``params_path``; nothing is written unless valid."""
    profile, params_path = Path(profile), Path(params_path)
    overlay = read_yaml(profile)
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.representer.add_representer(float, _float_yaml_11)
    document = round_trip.load(params_path.read_text(encoding="utf-8"))
    _merge(document, overlay)
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    merged = buffer.getvalue()
    parse_params(yaml.safe_load(merged), source=f"{params_path} (with {profile})")
    params_path.write_text(merged, encoding="utf-8")
