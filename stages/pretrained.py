"""Stage `pretrained`: convert the pretrained model of ``model.name`` once into a local
folder (safetensors in ``model.dtype``) that `base` and `oracle` start from.

A GGUF checkpoint is dequantised here and nowhere else, and a hub or package model is read
from its source once: the training stages load the folder. For ``model.name: scratch``
there is nothing to convert; the folder holds only ``source.json`` saying so, and the stage
imports neither torch nor transformers.
"""

import argparse

from ssiuu.config import layout
from ssiuu.config.params import load_params
from ssiuu.config.sources import SCRATCH, resolve_model_source
from ssiuu.model.runtime import configure, run_stage


def main() -> None:
    """Write models/pretrained/ (with source.json)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    source = {"name": params.model.name, "gguf_file": params.model.gguf_file,
              "dtype": params.model.dtype}
    if params.model.name != SCRATCH:
        resolve_model_source(params.model.name)  # a clear error before torch is imported
        from ssiuu.model.loading import (  # torch: ~5 s to import
            load_model,
            load_tokenizer,
            save_model,
        )

        configure(params.runtime.num_threads)
        model = load_model(params.model.name, params.model.gguf_file, params.model.dtype)
        tokenizer = load_tokenizer(params.model.name, params.model.gguf_file)
        save_model(model, tokenizer, layout.PRETRAINED)
    layout.write_json(source, layout.PRETRAINED / "source.json")
    print(f"pretrained {params.model.name!r} -> {layout.PRETRAINED}")


if __name__ == "__main__":
    run_stage(main)
