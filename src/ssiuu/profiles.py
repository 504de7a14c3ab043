"""Params profiles: YAML overlays under ``profiles/`` merged into ``params.yaml``.

A profile holds only the keys it changes (``profiles/tiny.yaml`` for tests,
``profiles/smollm2.yaml`` for the real pretrained model). Applying one rewrites
``params.yaml`` in place, comments kept, so DVC sees ordinary param changes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from ssiuu.params import parse_params, read_yaml


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
    yaml = YAML()
    yaml.preserve_quotes = True
    document = yaml.load(params_path.read_text(encoding="utf-8"))
    _merge(document, overlay)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    merged = buffer.getvalue()
    parse_params(YAML(typ="safe").load(merged), source=f"{params_path} (with {profile})")
    params_path.write_text(merged, encoding="utf-8")
