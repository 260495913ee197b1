"""The ``contimg`` command: parse and validate, then call the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dsa110_contimg.errors import ContimgError

log = logging.getLogger("dsa110_contimg.cli")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake on one line, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_simulation_options(parser) -> None:
    from dsa110_contimg.simulate import PRESETS

    parser.add_argument(
        "--preset",
        default="small",
        choices=sorted(PRESETS),
        help="size preset (default: small); options below override it",
    )
    parser.add_argument(
        "--n-antennas", type=int, help="antennas (2-96), spread over arms and outriggers"
    )
    parser.add_argument("--n-spw", type=int, help="spectral windows, from SPW 0 (1-16)")
    parser.add_argument("--n-chan", type=int, help="channels per SPW (48 gives 244.14 kHz)")
    parser.add_argument("--n-times", type=int, help="integrations, one field each")
    parser.add_argument(
        "--start-time", help="ISO UTC start (default: calibrator transits mid-file)"
    )
    parser.add_argument(
        "--pointing-dec", type=float, dest="pointing_dec_deg", help="pointing Dec, deg"
    )
    parser.add_argument("--calibrator", help="calibrator in the field (default 0834+555)")
    parser.add_argument(
        "--field-sources", type=int, dest="n_field_sources", help="number of faint field sources"
    )
    parser.add_argument(
        "--no-beam",
        dest="primary_beam",
        action="store_false",
        default=None,
        help="no primary-beam attenuation",
    )
    parser.add_argument(
        "--no-corruption",
        dest="corrupt",
        action="store_false",
        default=None,
        help="unit gains (no bandpass, no drifts)",
    )
    parser.add_argument(
        "--no-noise", dest="noise", action="store_false", default=None, help="no thermal noise"
    )
    parser.add_argument(
        "--no-autocorr",
        dest="autocorrelations",
        action="store_false",
        default=None,
        help="leave autocorrelations out",
    )
    parser.add_argument(
        "--dead-antenna",
        dest="dead_antennas",
        action="append",
        metavar="NAME",
        help="antenna that sees no signal (repeatable)",
    )
    parser.add_argument("--rfi-spikes", type=int, dest="n_rfi_spikes", help="RFI spikes to add")
    parser.add_argument("--zero-row-fraction", type=float, help="fraction of rows set to exact 0")
    parser.add_argument("--sefd", type=float, dest="sefd_jy", help="SEFD per antenna, Jy")
    parser.add_argument("--seed", type=int, help="random seed (same seed, same MS)")


_SIMULATION_FIELDS = (
    "n_antennas", "n_spw", "n_chan", "n_times", "start_time", "pointing_dec_deg", "calibrator",
    "n_field_sources", "primary_beam", "corrupt", "noise", "autocorrelations", "dead_antennas",
    "n_rfi_spikes", "zero_row_fraction", "sefd_jy", "seed",
)  # fmt: skip


def _simulation_config(args):
    from dsa110_contimg.simulate import preset

    overrides = {k: getattr(args, k) for k in _SIMULATION_FIELDS if getattr(args, k) is not None}
    if "dead_antennas" in overrides:
        overrides["dead_antennas"] = tuple(overrides["dead_antennas"])
    config = preset(args.preset, **overrides)
    config.validate()
    return config


def _cmd_simulate(args) -> int:
    from dsa110_contimg.simulate import simulate_observation

    config = _simulation_config(args)
    log.debug("simulation config: %s", json.dumps(config.to_dict()))
    result = simulate_observation(args.out, config, overwrite=args.overwrite)
    print(f"MS:    {result.ms_path} ({result.n_rows} rows, {result.seconds:.1f} s)")
    print(f"truth: {result.truth_path}")
    return 0


def _cmd_inspect(args) -> int:
    from dsa110_contimg.ms.summary import format_summary, summarise_ms

    summary = summarise_ms(args.ms)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(format_summary(summary))
    return 0


def _cmd_demo(args) -> int:
    from dsa110_contimg.ms.summary import format_summary, summarise_ms
    from dsa110_contimg.simulate import preset, simulate_observation

    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    config = preset("small", n_field_sources=3, seed=args.seed)
    log.info("demo 1/2: simulate a small DSA-110 observation with known truth")
    result = simulate_observation(out / "demo.ms", config, overwrite=True)
    log.info("demo 2/2: inspect it through dask-ms")
    summary = summarise_ms(result.ms_path)
    print(format_summary(summary))
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    print("\nOutputs:")
    print(f"  observation  {result.ms_path}")
    print(f"  truth        {result.truth_path}")
    print(f"  summary      {out / 'summary.json'}")
    print(f"  logs         {args.run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="contimg", description=__doc__)
    parser.add_argument(
        "--log-dir",
        help="directory for this run's logs (default: a new one "
        "under $CONTIMG_RUN_ROOT or ./contimg_runs)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    simulate = commands.add_parser("simulate", help="write a synthetic DSA-110 observation")
    simulate.add_argument("out", help="output Measurement Set path (e.g. obs.ms)")
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing MS")
    _add_simulation_options(simulate)
    simulate.set_defaults(func=_cmd_simulate)

    inspect = commands.add_parser("inspect", help="summarise an MS (structure, per-SPW figures)")
    inspect.add_argument("ms")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=_cmd_inspect)

    demo = commands.add_parser("demo", help="the whole system on a small simulated observation")
    demo.add_argument("--out", default="demo_output", help="output directory (default demo_output)")
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    from dsa110_contimg.runlog import start_run_logging

    args = build_parser().parse_args(argv)
    try:
        args.run_dir = start_run_logging(args.command, args.log_dir, args.verbose)
        return args.func(args)
    except ContimgError as err:
        print(f"contimg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("contimg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
