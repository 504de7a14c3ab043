"""The ``ssiuu`` command: helpers around the DVC pipeline (the stages live in ``stages/``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssiuu.errors import SsiuuError


def _check(args: argparse.Namespace) -> None:
    from ssiuu.params import load_params

    load_params(args.params)
    print(f"{args.params}: ok")


def _profile(args: argparse.Namespace) -> None:
    from ssiuu.profiles import apply_profile

    path = Path(args.name)
    if not path.suffix:
        path = Path(args.profiles_dir) / f"{args.name}.yaml"
    apply_profile(path, args.params)
    print(f"applied {path} to {args.params}")


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
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except SsiuuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
