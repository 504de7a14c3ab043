"""Stage `tokenizer`: train the scratch tokenizer on the corpus, or save the model's own."""

import argparse
from pathlib import Path

from ssiuu.finetune import corpus, read_splits
from ssiuu.models import SCRATCH, load_tokenizer, resolve_model_source, train_word_tokenizer
from ssiuu.params import load_params
from ssiuu.runtime import configure, run_stage


def main() -> None:
    """Write models/tokenizer/."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--out", default="models/tokenizer")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    resolve_model_source(params.model.name)
    if params.model.name == SCRATCH:
        tokenizer = train_word_tokenizer(corpus(read_splits(args.data)))
    else:
        tokenizer = load_tokenizer(params.model.name, params.model.gguf_file)
    tokenizer.save_pretrained(Path(args.out))
    print(f"tokenizer for {params.model.name!r}: {len(tokenizer)} tokens -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
