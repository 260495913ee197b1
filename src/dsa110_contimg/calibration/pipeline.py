"""Plan, run and summarise a calibration (or apply-only) run on a Dask cluster."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from dsa110_contimg.calibration.config import CalibrationConfig
from dsa110_contimg.calibration.graph import add_calibration_graph
from dsa110_contimg.calibration.plan import CalibrationPlan, plan_observation
from dsa110_contimg.calibration.summary import RunSummary, summarise
from dsa110_contimg.cluster.run import show_progress
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms import caltables
from dsa110_contimg.ms.antennas import antenna_names, array_of, resolve_refant
from dsa110_contimg.ms.publish import product_input
from dsa110_contimg.ms.reads import (
    chan_freq_hz,
    main_columns,
    read_subtable,
    require_ms,
    require_parallel_hands,
    weights_meaningful,
)
from dsa110_contimg.selection import parse_index_selection

log = logging.getLogger(__name__)


def _spws(ms, selection: str | None) -> tuple[list[int], int]:
    n_spw = len(chan_freq_hz(ms))
    if not selection:
        return list(range(n_spw)), n_spw
    return parse_index_selection(selection, "SPW", n_spw), n_spw


def _n_fields(ms) -> int:
    return len(read_subtable(ms, "FIELD", columns=["NAME"]).NAME)


def _fields(ms, selection: str | None) -> list[int]:
    if not selection:
        return []
    return parse_index_selection(selection, "field", _n_fields(ms))


def _checked_input(ms, spw_selection) -> tuple[list[int], int]:
    """An MS with DATA and the SPWs selected in it (and how many it has)."""
    require_ms(ms)
    if "DATA" not in main_columns(ms):
        raise ContimgError(f"{ms} has no DATA column: nothing to calibrate")
    require_parallel_hands(ms, "calibration")
    return _spws(ms, spw_selection)


def plan_calibration(
    ms_list,
    calibrator,
    cal_fields: dict,
    refant: str,
    config: CalibrationConfig,
    output_dir,
    spw_selection: str | None = None,
    targets=(),
) -> CalibrationPlan:
    """Check every input and decide every path before anything runs.

    ``cal_fields`` maps each calibrator MS to the field ids to solve on.
    Targets take the solutions of the first calibrator MS.
    """
    from dsa110_contimg.phasing.check import DEFAULT_THRESHOLDS
    from dsa110_contimg.phasing.geometry import field_geometry

    observations = []
    for ms in ms_list:
        spws, n_spw = _checked_input(ms, spw_selection)
        fields = list(cal_fields[ms])
        geometry = field_geometry(ms, calibrator)
        needs_shift = any(
            geometry[f].separation_arcmin >= DEFAULT_THRESHOLDS.phased_arcmin for f in fields
        )
        phasecenter = None
        if config.phasing.rephase and needs_shift:
            phasecenter = f"J2000 {calibrator.ra_deg}deg {calibrator.dec_deg}deg"
        elif not config.phasing.rephase:
            log.warning(
                "rephasing is switched off: %s fields %s stay %.1f arcmin from %s",
                ms,
                fields,
                max(geometry[f].separation_arcmin for f in fields),
                calibrator.name,
            )
        observations.append(
            plan_observation(
                ms,
                "calibrator",
                spws,
                n_spw,
                config,
                output_dir,
                equal_weights=not weights_meaningful(ms),
                cal_fields=fields,
                phasecenter=phasecenter,
                refant=resolve_refant(ms, refant),
                antennas_with_data=array_of(ms).with_data,
            )
        )
    for ms in targets:
        spws, n_spw = _checked_input(ms, spw_selection)
        _check_same_setup(ms, ms_list[0])
        observations.append(
            plan_observation(
                ms,
                "target",
                spws,
                n_spw,
                config,
                output_dir,
                equal_weights=not weights_meaningful(ms),
                solutions_from=observations[0].ms,
            )
        )
    _refuse_duplicate_outputs(observations)
    return CalibrationPlan(calibrator.name, tuple(observations), config, str(Path(output_dir)))


def _check_same_setup(ms, reference) -> None:
    if len(antenna_names(ms)) != len(antenna_names(reference)) or [
        len(f) for f in chan_freq_hz(ms)
    ] != [len(f) for f in chan_freq_hz(reference)]:
        raise ContimgError(
            f"{ms} has another array or spectral setup than {reference}: its solutions do not apply"
        )


def _refuse_duplicate_outputs(observations) -> None:
    """Two inputs never share products, in one run or across runs into one directory."""
    seen = {}
    for obs in observations:
        if obs.output_mms in seen:
            raise ContimgError(
                f"{obs.ms} and {seen[obs.output_mms]} would both write {obs.output_mms}: "
                "rename one or use separate --out directories"
            )
        seen[obs.output_mms] = obs.ms
        made_from = product_input(obs.output_mms)
        if made_from is not None and made_from != obs.ms:
            raise ContimgError(
                f"{obs.output_mms} holds the calibration of {made_from}; {obs.ms} has the same "
                "name and would replace it: use another --out (or remove the old products)"
            )


def plan_apply(
    ms_list, tables, config: CalibrationConfig, output_dir, fields=None, spw_selection=None
) -> CalibrationPlan:
    """Apply existing caltables to each MS (a calibrated copy per MS, DATA untouched)."""
    if not tables:
        raise ContimgError("give the caltables to apply with --tables")
    observations = []
    for ms in ms_list:
        spws, n_spw = _checked_input(ms, spw_selection)
        n_ant = len(antenna_names(ms))
        freqs = chan_freq_hz(ms)
        for table in tables:
            info = caltables.caltable_info(table)
            caltables.check_caltable_matches(info, n_ant, n_spw, spws)
            chanbin = config.fast.chanbin if config.fast.enabled else 1
            caltables.check_bandpass_channels(info, freqs, spws, chanbin)
        observations.append(
            plan_observation(
                ms,
                "target",
                spws,
                n_spw,
                config,
                output_dir,
                equal_weights=not weights_meaningful(ms),
                apply_fields=_fields(ms, fields),
                given_tables=[str(Path(t).absolute()) for t in tables],
            )
        )
    _refuse_duplicate_outputs(observations)
    return CalibrationPlan(None, tuple(observations), config, str(Path(output_dir)))


def run_plan(
    plan: CalibrationPlan, client, log_dir, calibrator=None, progress: bool | None = None
) -> RunSummary:
    """Run every task of the plan on ``client``; write and return the run summary."""
    log_dir = Path(log_dir).absolute()
    (log_dir / "casa").mkdir(parents=True, exist_ok=True)
    with claimed_outputs(plan.observations):
        return _run_locked_plan(plan, client, log_dir, calibrator, progress)


@contextlib.contextmanager
def claimed_outputs(observations):
    """Hold every observation's output lock and clear what a killed run left behind."""
    with contextlib.ExitStack() as locks:
        for obs in observations:
            Path(obs.work_dir).parent.mkdir(parents=True, exist_ok=True)
            locks.enter_context(_sole_writer(obs))
            _remove_leftovers_of_killed_runs(obs)
        yield


def _run_locked_plan(plan, client, log_dir, calibrator, progress) -> RunSummary:
    from dsa110_contimg.qa.graph import forget_visibility_qa

    for obs in plan.observations:  # a reused run directory: no QA sums of an earlier run
        forget_visibility_qa(log_dir, obs.stem)
    graph = add_calibration_graph(plan, calibrator, str(log_dir))
    started = time.perf_counter()
    futures = {stem: client.compute(v["outcomes"]) for stem, v in graph.items()}
    show_progress(
        [f for fs in futures.values() for f in fs],
        sys.stderr.isatty() if progress is None else progress,
    )
    results = {stem: client.gather(fs) for stem, fs in futures.items()}
    summary = summarise(plan, results, time.perf_counter() - started)
    path = log_dir / "summary.json"
    path.write_text(json.dumps(summary.to_json(), indent=2, default=str))
    return dataclasses.replace(summary, summary_path=str(path))


@contextlib.contextmanager
def _sole_writer(obs):
    """Hold an exclusive lock on the observation's outputs for the whole run.

    A second run writing the same products at once is refused; the lock
    dies with its process, so a killed run never blocks the next one. The
    lock file is removed when the run ends (a killed run's is reused).
    """
    import fcntl
    import os

    lock_path = Path(obs.work_dir).with_name(f".{obs.stem}.cal.lock")
    while True:
        lock = open(lock_path, "a")  # noqa: SIM115 - closed below
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ContimgError(
                f"another calibration of {obs.stem} is writing to {lock_path.parent}; "
                "wait for it or choose another --out"
            ) from None
        # The previous holder may have removed the file between our open and lock.
        if lock_path.exists() and os.stat(lock_path).st_ino == os.fstat(lock.fileno()).st_ino:
            break
        lock.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        lock.close()


def _remove_leftovers_of_killed_runs(obs) -> None:
    """The work directory and hidden ``.<name>.partial-<pid>`` products of a killed run."""
    import shutil

    shutil.rmtree(obs.work_dir, ignore_errors=True)
    out = Path(obs.output_mms).parent
    for folder in (out, out / f"{obs.stem}.caltables"):
        for partial in folder.glob(f".{obs.stem}*.partial-*"):
            shutil.rmtree(partial, ignore_errors=True)
