"""The ``ssiuu`` command: helpers around the DVC pipeline (the stages live in ``stages/``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssiuu.config.errors import SsiuuError


def _check(args: argparse.Namespace) -> None:
    from ssiuu.config.params import load_params
    from ssiuu.data.inputs import check_inputs

    params = load_params(args.params)
    check_inputs(params.data, params.model)
    print(f"{args.params}: ok (params, data files and model folder)")


def _profile(args: argparse.Namespace) -> None:
    from ssiuu.config.profiles import apply_profile

    path = Path(args.name)
    if not path.suffix:
        path = Path(args.profiles_dir) / f"{args.name}.yaml"
    apply_profile(path, args.params)
    print(f"applied {path} to {args.params}")


def _audit(args: argparse.Namespace) -> int:
    if args.request is not None and args.model is not None:
        raise SsiuuError("audit: give MODEL VERSION or --request ID, not both")
    if args.request is None and (args.model is None or args.version is None):
        raise SsiuuError("audit: give MODEL VERSION (e.g. `ssiuu audit ssiuu-gd 3`) "
                         "or --request ID")
    import json

    from ssiuu.release import registry
    from ssiuu.release.audit import audit_version, format_audit, format_versions, record_as_json

    root = Path(args.root)
    if args.request is not None:
        rows = registry.versions_for_request(args.request, root=root)
        print(json.dumps(rows, indent=2, default=str) if args.json
              else format_versions(args.request, rows))
        return 0
    record = registry.read_version(args.model, args.version, root=root)
    weights = registry.registered_weights_sha256(record, root=root) if record.get("lineage") \
        else None
    result = audit_version(record, root, weights)
    print(record_as_json(result) if args.json else format_audit(result))
    return 0 if result.verified else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ssiuu`` console script."""
    parser = argparse.ArgumentParser(prog="ssiuu", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate params.yaml")
    check.add_argument("--params", default="params.yaml")
    check.set_defaults(run=_check)
    profile = commands.add_parser("profile", help="merge a profile overlay into params.yaml")
    profile.add_argument("name", help="profile name (profiles/NAME.yaml) or a YAML path")
    profile.add_argument("--params", default="params.yaml")
    profile.add_argument("--profiles-dir", default="profiles")
    profile.set_defaults(run=_profile)
    audit = commands.add_parser(
        "audit", help="print a registered version's compliance record and verify its lineage",
        description="Exit status: 0 verified, 1 the workspace differs from the record, 2 error.")
    audit.add_argument("model", nargs="?", help="registered model name")
    audit.add_argument("version", nargs="?", help="model version number")
    audit.add_argument("--request", metavar="ID", help="list every version made for request ID")
    audit.add_argument("--json", action="store_true", help="print JSON instead of text")
    audit.add_argument("--root", default=".", help="the DVC workspace (default: .)")
    audit.set_defaults(run=_audit)
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
    except SsiuuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
