"""The `nads` command line."""
from __future__ import annotations

import argparse
import sys

from . import config


def _check_params(args) -> int:
    sections = config.check_all(args.params)
    print(f"{args.params}: profile {config.profile(args.params)!r}, sections ok: {', '.join(sections)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nads", description="Neural Anisotropy Directions toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-params", help="validate params.yaml without running anything")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=_check_params)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except config.ParamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
