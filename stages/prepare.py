"""Stage `prepare`: load the facts, split them by the deletion requests, validate, write."""

import argparse
import sys
from dataclasses import asdict

from ssiuu.config import layout
from ssiuu.config.params import load_params
from ssiuu.data.prepare import prepare
from ssiuu.data.records import sha256_file
from ssiuu.model.runtime import offline_defaults, run_stage


def main() -> None:
    """Write data/prepared/*.jsonl, data/prepared/manifest.json (request ids, split hashes,
    distractor changes: no subject names) and reports/data_validation.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    offline_defaults()  # no torch here: the data checks run in pandas
    prepared = prepare(params.data, layout.PREPARED, layout.DATA_VALIDATION.parent,
                       max_length=params.model.max_length)
    manifest = {
        "requests": [{"id": r.request_id, "received": r.received, "subjects": len(r.subjects),
                      "sha256": sha256_file(r.path)} for r in prepared.requests],
        "splits": {split: {"path": path.as_posix(), "rows": prepared.rows[split],
                           "sha256": prepared.sha256[split]}
                   for split, path in prepared.paths.items()},
        "distractors": asdict(prepared.distractors),
    }
    layout.write_json(manifest, layout.MANIFEST)
    counts = ", ".join(f"{split}: {n} rows" for split, n in prepared.rows.items())
    print(f"{len(prepared.requests)} request(s); validated and wrote {layout.PREPARED} "
          f"({counts})")
    for split, n in prepared.distractors.replaced.items():
        if n:
            why = ("not as familiar to the oracle as their answer (forget-only or not)"
                   if split == "forget" else "forget-only answers")
            print(f"{split}: replaced {n} distractor(s) that were {why}")
    unmatched = prepared.distractors.unmatched.get("forget", 0)
    if unmatched:
        print(f"warning: {unmatched} forget fact(s) have distractors the oracle knows "
              "better or worse than the answer (too few answers of their kind on the "
              "answer's side): the oracle is not at chance on them by construction",
              file=sys.stderr)
    drawn = ", ".join(f"{split}: {n}" for split, n in prepared.distractors.drawn.items() if n)
    if drawn:
        print(f"drew same-kind distractors for rows that lacked two ({drawn} rows)")


if __name__ == "__main__":
    run_stage(main)
