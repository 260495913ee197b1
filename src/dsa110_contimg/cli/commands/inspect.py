"""``contimg inspect``: what an MS holds, read through dask-ms."""

from __future__ import annotations

from dsa110_contimg.cli.app import print_json
from dsa110_contimg.cli.options import add_json_option


def register(commands) -> None:
    inspect = commands.add_parser("inspect", help="summarise an MS (structure, per-SPW figures)")
    inspect.add_argument("ms")
    add_json_option(inspect)
    inspect.set_defaults(func=run_inspect)


def run_inspect(args) -> int:
    from dsa110_contimg.ms.summary import format_summary, summarise_ms

    summary = summarise_ms(args.ms)
    if args.json:
        print_json(summary.to_dict())
    else:
        print(format_summary(summary))
    return 0
