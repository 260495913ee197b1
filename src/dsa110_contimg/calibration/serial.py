"""The same recipe as a careful serial CASA run: one process, the whole MS at once.

The reference the Dask run is checked against (tests) and timed against
(benchmarks): identical task parameters, but each CASA task sees every
selected SPW in one call, as a script calling casatasks in order would.
"""

from __future__ import annotations

import time
from pathlib import Path

import dask

from dsa110_contimg import casa_env
from dsa110_contimg.calibration.plan import ObservationPlan, applied_steps, solve_steps
from dsa110_contimg.calibration.recipe import (
    GAIN_PRIOR_STEPS,
    PRIOR_STEPS,
    applied_tables,
    selection_string,
    solve_parameters,
)
from dsa110_contimg.casa import tasks
from dsa110_contimg.ms import caltables
from dsa110_contimg.ms.antennas import array_of


def run_serial_recipe(
    obs: ObservationPlan, calibrator, config, out_dir, log_dir, multi_ms: bool = False
) -> dict:
    """Run the recipe for calibrator observation ``obs`` serially.

    Writes ``out_dir/<stem>.serial.ms`` (DATA, MODEL_DATA, CORRECTED_DATA)
    and ``out_dir/<stem>_serial_<step>`` tables; returns their paths and the
    seconds each step took. ``multi_ms`` partitions the rephased MS into a
    per-SPW Multi-MS first (``<stem>.serial.mms``): CASA's own layout for MPI
    runs, where flagdata and applycal work on the sub-MSs in parallel.
    """
    from dsa110_contimg.phasing.model import add_model_write_graph

    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_file = str(Path(log_dir) / "casa" / f"{obs.stem}-serial.log")
    vis = str(out_dir / f"{obs.stem}.serial.ms")
    spw = selection_string(obs.spws)
    seconds = {}

    started = time.perf_counter()
    if obs.phasecenter:
        tasks.run_phaseshift(
            obs.ms, vis, {f: obs.phasecenter for f in obs.cal_fields}, spw=spw, log_file=log_file
        )
    else:
        tasks.run_split(obs.ms, vis, spw=spw, log_file=log_file)
    if multi_ms:
        mms = str(out_dir / f"{obs.stem}.serial.mms")
        tasks.run_partition(vis, mms, len(obs.spws), log_file)
        vis = mms
    seconds["prepare"] = time.perf_counter() - started

    started = time.perf_counter()
    tasks.run_flagdata(vis, config.flagging.modes(), log_file, one_call_per_mode=multi_ms)
    seconds["flag"] = time.perf_counter() - started

    started = time.perf_counter()
    if config.phasing.write_model:
        with casa_env.casa_output_to_log():
            dask.compute(
                add_model_write_graph(
                    vis,
                    calibrator,
                    primary_beam=config.phasing.primary_beam,
                    at_phase_centre=config.phasing.model_position == "phase-centre",
                ),
                scheduler="synchronous",
            )
    seconds["model"] = time.perf_counter() - started

    tables = {}
    for step, combined in solve_steps(config):
        started = time.perf_counter()
        task, parameters = solve_parameters(step, obs, config, combined)
        parameters["spw"] = spw
        priors = PRIOR_STEPS.get(step, GAIN_PRIOR_STEPS)
        parameters.update(applied_tables(priors, tables, obs.n_spw_total))
        table = str(out_dir / f"{obs.stem}_serial_{step}")
        runner = tasks.run_bandpass if task == "bandpass" else tasks.run_gaincal
        runner(vis, table, log_file, **parameters)
        tables[step] = table
        seconds[step] = time.perf_counter() - started

    started = time.perf_counter()
    parameters = applied_tables(applied_steps(config), tables, obs.n_spw_total)
    tasks.run_applycal(
        vis,
        log_file,
        spw=spw,
        calwt=[config.apply.calwt] * len(parameters["gaintable"]),
        applymode="calflag",
        **parameters,
    )
    seconds["apply"] = time.perf_counter() - started
    return {
        "ms": vis,
        "tables": tables,
        "seconds": seconds,
        "solutions": {
            s: caltables.solution_statistics(t, array_of(vis).with_data) for s, t in tables.items()
        },
    }
