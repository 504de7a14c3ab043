"""A one-page, plain-language certificate per deletion request (``reports/requests/<ID>.md``).

What was asked, when, what was done, the release verdict and how to re-verify it: for the
person who asked and for the officer who answers for it. Ids, counts, hashes and scores
only; never a name or a fact of the forget set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CertifiedVersion:
    """One registered version, as the certificate lists it."""

    version: int
    method: str
    seed: int
    passed: bool
    reasons: tuple[str, ...]
    aliases: tuple[str, ...]


def _verdict(name: str, versions: Sequence[CertifiedVersion]) -> list[str]:
    released = [v for v in versions if "production" in v.aliases]
    if released:
        best = released[0]
        return [f"**Released.** Version {best.version} of `{name}` ({best.method}, seed "
                f"{best.seed}) passed the release gate and is the registry's `production` "
                "model for this request set."]
    lines = [f"**Not released.** No version made for this request set passed the release "
             f"gate, so `{name}` has no `production` model. The reasons, per method:", ""]
    by_method: dict[str, list[str]] = {}
    for version in versions:
        by_method.setdefault(version.method, [])
        by_method[version.method] += [r for r in version.reasons
                                      if r not in by_method[version.method]]
    lines += [f"- {method}: " + "; ".join(reasons or ["passed"])
              for method, reasons in by_method.items()]
    return lines


def certificate_markdown(request: Mapping[str, object], name: str,
                         versions: Sequence[CertifiedVersion], attacks: Sequence[str],
                         data_sha256: Mapping[str, str], commit: str) -> str:
    """The certificate of one request (an entry of ``data/prepared/manifest.json``)."""
    methods = sorted({v.method for v in versions})
    seeds = sorted({v.seed for v in versions})
    lines = [
        f"# Deletion request {request['id']}: certificate", "",
        "## What was asked", "",
        f"Received {request['received']}: erase every fact about {request['subjects']} data "
        f"subject(s) from the model. The request file's sha256 is `{request['sha256']}`; "
        "the names it holds appear nowhere in this record.", "",
        "## What was done", "",
        f"The model was unlearned with {len(methods)} method(s) ({', '.join(methods)}), "
        f"each in {len(seeds)} independent run(s) (seeds {', '.join(map(str, seeds))}). "
        f"Each result was then attacked ({', '.join(attacks)}) to test whether the facts "
        "come back, and compared with an oracle model that never saw them. The data it "
        "used (sha256):", "",
        *[f"- {split}: `{digest}`" for split, digest in data_sha256.items()], "",
        f"Code: git commit `{commit}`. Every result is a version of the registered model "
        f"`{name}` in the MLflow Model Registry.", "",
        "## Verdict", "",
        *_verdict(name, versions), "",
        "| version | method | seed | release gate |",
        "|---|---|---|---|",
        *[f"| {v.version} | {v.method} | {v.seed} | {'passed' if v.passed else 'failed'}"
          f"{' (' + ', '.join(v.aliases) + ')' if v.aliases else ''} |" for v in versions],
        "",
        "## How to re-verify", "",
        f"- `ssiuu audit {name} <version>` prints a version's full record and re-checks it "
        "against this workspace: the data hashes, the model weights, the `dvc.lock` entry "
        "and the commit; it exits non-zero naming the first thing that differs.",
        f"- `ssiuu audit --request {request['id']}` lists every version made for this "
        "request.",
        "- `dvc status` shows nothing changed since the record was made; `dvc repro` on a "
        "fresh clone at the commit above reproduces every score.",
    ]
    return "\n".join(lines) + "\n"
