"""`ganterp-fast classes [QUERY]`: list or search the 1000 ImageNet classes."""

from __future__ import annotations

import argparse

from ganterp_fast.engine.latent.classes import find_classes


def register(subparsers: argparse._SubParsersAction) -> None:
    from ganterp_fast.cli.options import add_common_flags

    parser = subparsers.add_parser(
        "classes",
        help="list or search the ImageNet classes BigGAN draws",
        description="List the 1000 ImageNet classes with their indices, or those whose name or WordNet id "
        "contains QUERY; a number is that index alone.",
    )
    parser.add_argument(
        "query", nargs="?", metavar="QUERY", help="text to search for, e.g. 'dog' or 'n015', or an index, e.g. 850"
    )
    add_common_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    matches = find_classes(args.query)
    for cls in matches:
        print(f"{cls.index:4d}  {cls.wnid}  {', '.join(cls.names)}")
    if not matches:
        hint = " (indices are 0 to 999)" if args.query.strip().isdigit() else ""
        print(f"no class matches {args.query!r}{hint}")
        return 1
    return 0
