"""Stage `check`: validate params.yaml and fingerprint the inputs DVC cannot list.

Runs first on every `dvc repro` (``always_changed``): a bad param fails here, before DVC
removes any later stage's outputs, and a user's data files or model folder are hashed
into data/inputs/, which the stages that read them depend on.
"""

import argparse

from ssiuu.config.params import load_params
from ssiuu.data.inputs import (
    DATA_FINGERPRINT,
    MODEL_FINGERPRINT,
    check_inputs,
    data_fingerprint,
    model_fingerprint,
    write_fingerprint,
)
from ssiuu.model.runtime import offline_defaults, run_stage


def main() -> None:
    """Write data/inputs/data.json and data/inputs/model.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    offline_defaults()
    check_inputs(params.data, params.model)
    for fingerprint, path in ((data_fingerprint(params.data), DATA_FINGERPRINT),
                              (model_fingerprint(params.model), MODEL_FINGERPRINT)):
        write_fingerprint(fingerprint, path)
    print(f"{args.params}: ok; inputs fingerprinted in {DATA_FINGERPRINT}, {MODEL_FINGERPRINT}")


if __name__ == "__main__":
    run_stage(main)
