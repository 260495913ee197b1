"""QA of calibration tables: per-SPW scored solution metrics and the bandpass plot data."""

from __future__ import annotations

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms import caltables, reads
from dsa110_contimg.qa import caltable_kernels as ck
from dsa110_contimg.qa.scores import Scorer, finite_or_none


def caltable_qa(path, ms, scorer: Scorer, array, truth, data_units: str = "Jy") -> dict:
    """Per-SPW scored solution metrics of one table; an unusable table is reported, not raised.

    Only the antennas with data count: CASA writes flagged solutions for
    antennas that never observed.
    """
    antenna_names = list(array.names)
    entry: dict = {"path": str(path)}
    try:
        by_spw = caltables.read_solutions_by_spw(path)
        if not by_spw:
            raise ContimgError(f"caltable {path} holds no solutions")
        solutions = next(iter(by_spw.values()))
        n_spw = len(reads.chan_freq_hz(ms))
        caltables.check_caltable_matches(solutions.info, len(antenna_names), n_spw, [])
        if list(solutions.antenna_names) != list(antenna_names):
            raise ContimgError(
                f"caltable {path} names other antennas than {ms}: it was solved on another MS"
            )
    except ContimgError as error:
        entry["error"] = str(error)
        return entry
    kind = solutions.info.kind
    entry["kind"] = kind
    entry["solved_on"] = solutions.ms_name
    truth_bandpass = None
    if truth is not None and kind == "B":
        from dsa110_contimg.simulate.truth import load_truth

        truth_bandpass = load_truth(truth).bandpass
    entry["spws"] = []
    dead = set()
    for spw, solutions in by_spw.items():
        rows = array.has_data[solutions.antenna]
        if not rows.any():
            continue
        m = ck.spw_solution_metrics(
            solutions.values[rows], solutions.flag[rows],
            None if solutions.snr is None else solutions.snr[rows],
            solutions.antenna[rows], len(antenna_names), kind,
        )  # fmt: skip
        metrics = {
            "flagged_fraction": scorer.entry(m["flagged_fraction"], "caltable_flagged_fraction"),
            "n_fully_flagged_antennas": scorer.entry(
                m["n_fully_flagged_antennas"], "n_fully_flagged_antennas"
            ),
        }
        if "snr_median" in m:
            metrics["snr_median"] = scorer.entry(m["snr_median"], "snr_median")
        if "amp_out_of_range_fraction" in m:
            metrics["amp_out_of_range_fraction"] = scorer.entry(
                m["amp_out_of_range_fraction"], "amp_out_of_range_fraction",
                not_judged=None if data_units.lower() == "jy" else (
                    f"DATA in {data_units or 'unstated'!r} units: gains carry the correlator's "
                    "scale"
                ),
            )  # fmt: skip
        if kind != "B" and data_units.lower() != "jy" and "amp_scatter" in m:
            metrics["gain_amp_scatter"] = scorer.entry(m["amp_scatter"], "gain_amp_scatter")
        if kind == "B" and "bandpass_amp_roughness" in m:
            metrics["bandpass_amp_roughness"] = scorer.entry(
                m["bandpass_amp_roughness"], "bandpass_amp_roughness"
            )
        elif kind != "B" and "phase_scatter_deg" in m:
            metrics["gain_phase_scatter_deg"] = scorer.entry(
                m["phase_scatter_deg"], "gain_phase_scatter_deg"
            )
        if truth_bandpass is not None:
            errors = ck.bandpass_truth_errors(
                solutions.values[rows], solutions.flag[rows], solutions.antenna[rows],
                solutions.spw[rows], int(solutions.refant[rows][0]), truth_bandpass,
            )  # fmt: skip
            metrics["bandpass_amp_error"] = scorer.entry(errors["amp_error"], "bandpass_amp_error")
            metrics["bandpass_phase_error_deg"] = scorer.entry(
                errors["phase_error_deg"], "bandpass_phase_error_deg"
            )
        dead.update(m["fully_flagged_antennas"])
        info = {
            k: finite_or_none(m.get(k))
            for k in ("n_solutions", "snr_p10", "amp_median", "amp_scatter", "phase_scatter_deg",
                      "bandpass_phase_roughness_deg")
        }  # fmt: skip
        info["fully_flagged_antennas"] = [antenna_names[a] for a in m["fully_flagged_antennas"]]
        info["antenna_flagged_fraction"] = {
            antenna_names[a]: round(float(f), 4)
            for a, f in enumerate(m["antenna_flagged_fraction"])
            if np.isfinite(f)
        }
        entry["spws"].append({"spw": spw, "metrics": metrics, "info": info})
    entry["fully_flagged_antennas"] = [antenna_names[a] for a in sorted(dead)]
    return entry


def bandpass_plot_data(path) -> dict | None:
    """Rows of every SPW, channels padded with NaN to the widest SPW (not drawn)."""
    try:
        by_spw = caltables.read_solutions_by_spw(path)
    except ContimgError:
        return None
    parts = list(by_spw.values())
    if not parts or parts[0].info.kind != "B" or not np.iscomplexobj(parts[0].values):
        return None
    n_chan = max(p.values.shape[1] for p in parts)
    values = []
    for p in parts:
        padded = np.full((p.values.shape[0], n_chan, p.values.shape[2]), np.nan, complex)
        padded[:, : p.values.shape[1]] = np.where(p.flag, np.nan, p.values)
        values.append(padded)
    return {
        "path": str(path),
        "values": np.concatenate(values),
        "antenna": np.concatenate([p.antenna for p in parts]),
        "spw": np.concatenate([p.spw for p in parts]),
    }
