"""``contimg simulate``: a synthetic DSA-110 observation with known truth."""

from __future__ import annotations

import json
import logging

log = logging.getLogger("dsa110_contimg.cli")

_SIMULATION_FIELDS = (
    "n_antennas", "n_spw", "n_chan", "n_times", "start_time", "pointing_dec_deg", "calibrator",
    "n_field_sources", "primary_beam", "corrupt", "noise", "autocorrelations", "dead_antennas",
    "n_rfi_spikes", "zero_row_fraction", "sefd_jy", "seed",
)  # fmt: skip


def register(commands) -> None:
    simulate = commands.add_parser("simulate", help="write a synthetic DSA-110 observation")
    simulate.add_argument(
        "out", help="output Measurement Set (e.g. obs.ms), or with --format uvh5 a directory"
    )
    simulate.add_argument(
        "--format", choices=["ms", "uvh5"], default="ms",
        help="ms (default) or uvh5: the correlator's subband files <time>_sbNN.hdf5",
    )  # fmt: skip
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _add_simulation_options(simulate)
    simulate.set_defaults(func=run_simulate)


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


def simulation_config(args):
    """The preset with the options the user gave, validated."""
    from dsa110_contimg.simulate import preset

    overrides = {k: getattr(args, k) for k in _SIMULATION_FIELDS if getattr(args, k) is not None}
    if "dead_antennas" in overrides:
        overrides["dead_antennas"] = tuple(overrides["dead_antennas"])
    config = preset(args.preset, **overrides)
    config.validate()
    return config


def run_simulate(args) -> int:
    from dsa110_contimg.simulate import simulate_observation

    config = simulation_config(args)
    log.debug("simulation config: %s", json.dumps(config.to_dict()))
    if args.format == "uvh5":
        from dsa110_contimg.simulate.subbands import simulate_subband_files

        written = simulate_subband_files(args.out, config, overwrite=args.overwrite)
        print(f"subband files: {written.directory} ({len(written.files)} files, "
              f"{written.seconds:.1f} s)")  # fmt: skip
        print(f"truth: {written.truth_path}")
        return 0
    result = simulate_observation(args.out, config, overwrite=args.overwrite)
    print(f"MS:    {result.ms_path} ({result.n_rows} rows, {result.seconds:.1f} s)")
    print(f"truth: {result.truth_path}")
    return 0
