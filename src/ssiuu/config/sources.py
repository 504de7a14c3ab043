"""Where ``model.name`` points: ``scratch``, a local folder, a package, or a hub id.

Kept free of torch and transformers, so the ``check`` stage can resolve a model source
(and fail on an unknown one) in a second, before any model is loaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ssiuu.config.errors import ModelSourceError

SCRATCH = "scratch"


def resolve_model_source(name: str) -> str:
    """Return the folder or hub id that ``name`` points at, or raise a clear error.

    Checked before any model is loaded: an unknown name fails here naming ``model.name``.
    """
    if name == SCRATCH:
        return name
    if name.startswith("package:"):
        module = name.removeprefix("package:")
        spec = importlib.util.find_spec(module) if module else None
        if spec is None or not spec.submodule_search_locations:
            raise ModelSourceError(
                f"params.yaml: model.name: package {module!r} is not installed "
                "(see README, 'A real pretrained model')"
            )
        return str(Path(next(iter(spec.submodule_search_locations))))
    if Path(name).is_dir():
        return name
    if Path(name).exists() or name.startswith((".", "/")) or name.count("/") > 1:
        raise ModelSourceError(f"params.yaml: model.name: {name!r} is not a model folder")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline and not isinstance(cached, str):
        raise ModelSourceError(
            f"params.yaml: model.name: {name!r} is not 'scratch', a local folder, "
            "'package:<module>', nor a model in the local Hugging Face cache "
            "(HF_HUB_OFFLINE is set, so nothing is downloaded)"
        )
    return name
