"""Stage `tokenizer`: train the scratch tokenizer on the non-forget corpus, or save the
pretrained model's own (read from the `pretrained` stage's folder, not from the source again:
a GGUF's tokenizer is parsed once).

The scratch tokenizer never sees the forget set's text: a word only the forget set holds
(a forgotten person's name, say) is composed of subword pieces of the other text, which
the oracle trains on, rather than being a token the oracle never sees.
"""

import argparse

from ssiuu.config import layout
from ssiuu.config.params import load_params
from ssiuu.config.sources import SCRATCH
from ssiuu.model.finetune import corpus, read_splits
from ssiuu.model.loading import load_tokenizer, train_scratch_tokenizer, unseen_tokens
from ssiuu.model.runtime import configure, run_stage


def main() -> None:
    """Write models/tokenizer/."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    if params.model.name == SCRATCH:
        splits = read_splits(layout.PREPARED)
        kept = corpus({name: rows for name, rows in splits.items() if name != "forget"})
        forget = corpus({"forget": splits["forget"]})
        tokenizer = train_scratch_tokenizer(kept, params.model.scratch.vocab_size,
                                            alphabet_texts=forget)
        unseen, total = unseen_tokens(tokenizer, forget, kept)
        print(f"forget text: {total} tokens, {unseen} of them never in the non-forget text")
    else:
        tokenizer = load_tokenizer(str(layout.PRETRAINED))
    tokenizer.save_pretrained(layout.TOKENIZER)
    print(f"tokenizer for {params.model.name!r}: {len(tokenizer)} tokens -> {layout.TOKENIZER}")


if __name__ == "__main__":
    run_stage(main)
