"""The recipe's solve steps for one (MS, SPW) piece, or every SPW of an MS combined.

A CASA solve is one ``gaincal``/``bandpass`` call. The native engine solves every
step of one SPW in one task from one read of its solve rows
(:func:`solve_chain`), each step applying the tables of the steps before it;
a small task per step hands on that step's outcome (:func:`chain_outcome`).
"""

from __future__ import annotations

import functools
from pathlib import Path

from dsa110_contimg.calibration.config import CalibrationConfig
from dsa110_contimg.calibration.outcomes import StepOutcome, run_step
from dsa110_contimg.calibration.plan import ObservationPlan
from dsa110_contimg.calibration.recipe import (
    GAIN_PRIOR_STEPS,
    PRIOR_STEPS,
    applied_tables,
    selection_string,
    solve_parameters,
)
from dsa110_contimg.calibration.steps import casa_log
from dsa110_contimg.casa import tasks
from dsa110_contimg.errors import StepFailed
from dsa110_contimg.ms import caltables


def solve(
    step: str,
    obs: ObservationPlan,
    config: CalibrationConfig,
    log_dir,
    vis: str,
    spw: int,
    caltable: str,
    tables_by_step: dict,
    upstream,
):
    """One CASA solve of ``step`` on ``vis`` (one SPW, or every SPW when ``spw`` < 0)."""

    def body():
        return _solve_body(step, obs, config, log_dir, vis, spw, caltable, tables_by_step)

    return run_step(step, obs, spw, upstream, body, config.retries)


def solve_chain(obs: ObservationPlan, config, log_dir, vis: str, spw: int, caltables_by_step,
                upstream) -> dict:  # fmt: skip
    """The native engine's solves of one SPW in recipe order, from its solve rows read once.

    ``caltables_by_step``: {step: table} in solve order. Returns {step: outcome}; each
    solve applies the tables of the steps before it, and a failed solve skips the rest.
    """
    rows = _HeldSolveRows(vis, spw, obs.cal_fields)
    outcomes, earlier = {}, {}
    for step, caltable in caltables_by_step.items():
        body = functools.partial(_solve_body, step, obs, config, log_dir, vis, spw, caltable,
                                 dict(earlier), rows)  # fmt: skip
        outcomes[step] = run_step(step, obs, spw, [*upstream, *outcomes.values()], body,
                                  config.retries)  # fmt: skip
        earlier[step] = caltable
    return outcomes


class _HeldSolveRows:
    """One SPW's solve rows, read on first use and kept for the solves after it."""

    def __init__(self, vis, spw, fields):
        self.vis, self.spw, self.fields, self.data = vis, spw, fields, None
        self.integration_sums = {}  # the gain solves' sums per integration, shared

    def __call__(self):
        if self.data is None:
            from dsa110_contimg.calibration import native

            self.data = native.read_solve_data(self.vis, self.spw, self.fields)
            return self.data, self.data.read_seconds
        return self.data, 0.0


def chain_outcome(outcomes: dict, step: str) -> StepOutcome:
    """One step's outcome of :func:`solve_chain` (its own task, named for the step)."""
    return outcomes[step]


def _solve_body(step, obs, config, log_dir, vis, spw, caltable, tables_by_step,
                solve_data=None) -> dict:  # fmt: skip
    combined = spw < 0
    task, parameters = solve_parameters(step, obs, config, combined)
    parameters["spw"] = selection_string(obs.spws) if combined else str(spw)
    priors = PRIOR_STEPS.get(step, GAIN_PRIOR_STEPS)
    parameters.update(applied_tables(priors, tables_by_step, obs.n_spw_total))
    Path(caltable).parent.mkdir(parents=True, exist_ok=True)
    if config.engine == "native":
        from dsa110_contimg.calibration import native, solve_request

        request = solve_request.request_from_parameters(task, parameters)
        data, read_seconds = solve_data() if solve_data else (None, None)
        sums = solve_data.integration_sums if solve_data else None
        detail = native.solve_to_caltable(vis, caltable, request, data, sums)
        if read_seconds is not None:
            detail["read_seconds"] = read_seconds
    else:
        runner = tasks.run_bandpass if task == "bandpass" else tasks.run_gaincal
        call = runner(vis, caltable, casa_log(log_dir, obs, spw, step), **parameters)
        detail = {"casa_seconds": call.seconds}
    stats = caltables.solution_statistics(caltable, obs.antennas_with_data)
    if stats["kept_fraction"] == 0.0:
        minsnr = parameters.get("minsnr")
        snr = stats.get("flagged_snr_median")
        why = (
            f"median SNR {snr:.2f} below minsnr {minsnr:g}: try a longer solution interval, "
            "averaging channels (--fast) or a lower minsnr"
            if snr is not None and minsnr and snr < minsnr
            else f"SNR below {minsnr}, or too few baselines per antenna"
        )
        raise StepFailed(
            f"{step} kept no solutions on {obs.stem} spw {spw if spw >= 0 else 'all'}: {why}"
        )
    return {**detail, "table": caltable, **stats}
