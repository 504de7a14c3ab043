"""Stage `prepare`: load the facts, split them by the deletion requests, validate, write."""

import argparse

from ssiuu.data.prepare import prepare
from ssiuu.params import load_params
from ssiuu.runtime import configure, run_stage


def main() -> None:
    """Write data/prepared/*.jsonl and reports/data_validation.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/prepared")
    parser.add_argument("--report-dir", default="reports")
    args = parser.parse_args()
    params = load_params(args.params)
    configure(params.runtime.num_threads)
    prepared = prepare(params.data, args.out, args.report_dir,
                       max_length=params.model.max_length)
    counts = ", ".join(f"{split}: {n} rows" for split, n in prepared.rows.items())
    print(f"{len(prepared.requests)} request(s); validated and wrote {args.out} ({counts})")
    for split, n in prepared.distractors.replaced.items():
        if n:
            print(f"{split}: replaced {n} distractor(s) that were forget-only answers")
    drawn = ", ".join(f"{split}: {n}" for split, n in prepared.distractors.drawn.items() if n)
    if drawn:
        print(f"drew same-kind distractors for rows that lacked two ({drawn} rows)")


if __name__ == "__main__":
    run_stage(main)
