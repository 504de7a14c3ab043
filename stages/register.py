"""Stage `register`: file every unlearned model in the MLflow Model Registry, gated.

One version per method and seed of the registered model for this model source and request
set, each with its params, scores, lineage and release-gate verdict; `candidate` and
`production` aliases only ever on versions that passed. Idempotent: a lineage already
registered adds nothing. Writes metrics/registry.json (what it registered) and one
certificate per deletion request, reports/requests/<ID>.md. The store is the
`MLFLOW_TRACKING_URI`, else sqlite:///mlflow.db with artifacts in mlartifacts/; it is not
a DVC output, so DVC never deletes or restores it.
"""

import argparse
from pathlib import Path

from ssiuu.config import layout
from ssiuu.config.params import load_params
from ssiuu.model.runtime import offline_defaults, run_stage
from ssiuu.records.certificate import CertifiedVersion, certificate_markdown
from ssiuu.records.provenance import prepared_manifest
from ssiuu.release.compliance import build_records, registered_model_name
from ssiuu.release.registry import register


def main() -> None:
    """Register the versions; write metrics/registry.json and reports/requests/<ID>.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    offline_defaults()
    root = Path.cwd()
    manifest = prepared_manifest()
    records = build_records(root, params, layout.read_json(layout.SUMMARY), manifest)
    requests = [request["id"] for request in manifest["requests"]]
    name = registered_model_name(params, requests)
    registered = register(name, records, requests=requests, model_source=params.model.name,
                          log_weights=params.registry.log_weights, root=root,
                          description="Unlearned models of ssiuu (one version per method "
                                      "and seed); aliases only on versions that passed the "
                                      "release gate.")
    reasons = {(r.method, r.seed): r.reasons for r in records}
    versions = [CertifiedVersion(v.version, v.method, v.seed, v.passed,
                                 reasons[(v.method, v.seed)], v.aliases) for v in registered]
    layout.write_json({"model": name, "requests": requests,
                       "added": sum(v.created for v in registered),
                       "versions": [{"version": v.version, "method": v.method,
                                     "seed": v.seed, "gate": "passed" if v.passed else "failed",
                                     "aliases": list(v.aliases), "added": v.created}
                                    for v in registered]}, layout.REGISTRY)
    commit = records[0].lineage["git"]["commit"] if records else "unknown"
    data = {split: entry["sha256"] for split, entry in manifest["splits"].items()}
    for request in manifest["requests"]:
        path = layout.certificate(request["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(certificate_markdown(request, name, versions, params.relearn.attacks,
                                             data, commit))
        print(f"{request['id']}: certificate -> {path}")
    passed = [v for v in registered if v.passed]
    print(f"{name}: {sum(v.created for v in registered)} version(s) added, "
          f"{len(registered) - sum(v.created for v in registered)} already registered; "
          f"{len(passed)} of {len(registered)} passed the release gate")


if __name__ == "__main__":
    run_stage(main)
