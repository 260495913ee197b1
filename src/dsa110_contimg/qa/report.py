"""The QA product of one MS (and its caltables): metrics, scores, verdicts, ``qa.json``.

Schema ``dsa110_contimg.qa`` version 1 (documented in README, "QA report").
Every entry under a ``metrics`` key is ``{value, score, verdict, line,
in_overall}``; ``overall_score`` is the worst score that counts
(``in_overall``): the DATA-vs-MODEL figures describe the data before
calibration and count only when there is no CORRECTED_DATA.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms import reads
from dsa110_contimg.ms.antennas import array_of
from dsa110_contimg.phasing.view import calibrator_view
from dsa110_contimg.qa import kernels
from dsa110_contimg.qa import visibility_kernels as vk
from dsa110_contimg.qa import visibility_metrics as vm
from dsa110_contimg.qa.caltable_report import bandpass_plot_data, caltable_qa
from dsa110_contimg.qa.graph import compute_visibility_qa
from dsa110_contimg.qa.scores import (
    GOOD,
    Scorer,
    finite_or_none,
    resolve_thresholds,
    verdict_of,
)

log = logging.getLogger(__name__)

SCHEMA = "dsa110_contimg.qa"
VERSION = 1
ALIGNED_ARCMIN = 1.0  # a calibrator closer than this to the phase centre counts as phased to it


@dataclass
class QAResult:
    """``summary`` is the qa.json content; ``plots`` the arrays the report draws."""

    summary: dict
    plots: dict = field(default_factory=dict)


def _visibility_metrics(m: dict, scorer: Scorer, role: str, aligned: bool, has_corrected: bool,
                        coherence: float | None, data_units: str = "Jy") -> dict:  # fmt: skip
    """Scored metrics of one group (a field, an SPW or all fields of a role).

    Phase scatters are judged by their excess over thermal noise; DATA
    against MODEL is judged only when DATA is in Jy (uncalibrated DATA holds
    instrumental gains, whose phases and units say nothing about the phasing).
    """
    phase_key = "phase_scatter_aligned_deg" if aligned else "phase_scatter_offset_deg"
    calibrated = has_corrected and (m["corrected_filled_fraction"] or 0) > 0
    raw_amplitude, raw_phase = _raw_data_notes(data_units)
    out = {
        "flagged_fraction": scorer.entry(m["flagged_fraction"], "flagged_fraction"),
        "zero_fraction": scorer.entry(m["zero_fraction"], "zero_fraction"),
        "nonfinite_fraction": scorer.entry(m["nonfinite_fraction"], "nonfinite_fraction"),
    }
    if has_corrected:
        out["corrected_filled_fraction"] = scorer.entry(
            m["corrected_filled_fraction"], "corrected_filled_fraction"
        )
        out["median_corrected_data_amp_ratio"] = scorer.entry(
            m["median_corrected_data_amp_ratio"], "median_corrected_data_amp_ratio",
            not_judged=raw_amplitude,
        )  # fmt: skip
    if role == "calibrator":
        out["data_model_phase_scatter_deg"] = scorer.phase_entry(
            m["data_model_phase_scatter_deg"], m.get("data_model_phase_floor_deg"), phase_key,
            in_overall=not calibrated, not_judged=raw_phase,
        )  # fmt: skip
        out["median_data_model_amp_ratio"] = scorer.entry(
            m["median_data_model_amp_ratio"], "median_data_model_amp_ratio",
            in_overall=not calibrated, not_judged=raw_amplitude,
        )  # fmt: skip
        if coherence is not None:
            out["model_coherence"] = scorer.entry(coherence, "model_coherence")
        if has_corrected:
            out["corrected_model_phase_scatter_deg"] = scorer.phase_entry(
                m["corrected_model_phase_scatter_deg"], m.get("corrected_model_phase_floor_deg"),
                "corrected_phase_excess_deg",
            )  # fmt: skip
            out["corrected_model_amp_ratio"] = scorer.entry(
                m.get("vector_corrected_model_amp_ratio"), "corrected_model_amp_ratio"
            )
            out["median_corrected_model_amp_ratio"] = scorer.entry(
                m["median_corrected_model_amp_ratio"], "median_corrected_model_amp_ratio",
                not_judged="biased upwards by noise; the vector mean is judged",
            )  # fmt: skip
            out["corrected_decorrelation"] = scorer.entry(
                m.get("corrected_decorrelation"), "corrected_decorrelation"
            )
    elif has_corrected:
        d, c = m["data_spectral_coherence"], m["corrected_spectral_coherence"]
        gain = c / d if d and c and math.isfinite(c / d) else None
        out["spectral_coherence_gain"] = scorer.entry(gain, "spectral_coherence_gain")
    return out


def _raw_data_notes(data_units: str) -> tuple[str | None, str | None]:
    """Why DATA's amplitudes and phases are not judged (None: they are).

    Amplitudes count only in Jy; phases are left alone only when the MS says
    its DATA are uncalibrated (instrumental phases say nothing about the phasing).
    """
    if data_units.lower() == "jy":
        return None, None
    if not data_units:
        return "the MS gives no DATA units: amplitudes may not be in Jy", None
    note = f"DATA in {data_units!r} units, not Jy: judged after calibration"
    return note, note


def _info(m: dict) -> dict:
    keep = ("n_visibilities", "n_used", "data_spectral_coherence", "corrected_spectral_coherence",
            "n_model", "data_decorrelation", "data_model_phase_floor_deg",
            "corrected_model_phase_floor_deg", "vector_data_model_amp_ratio",
            "vector_corrected_model_amp_ratio")  # fmt: skip
    return {k: finite_or_none(m.get(k)) for k in keep}


def _group_metrics(partials: vk.VisibilityPartials, uv_max: float) -> tuple[dict, dict]:
    metrics = vm.finalise_visibility_metrics(partials)
    profile = vm.uv_profile(partials, uv_max)
    metrics["corrected_decorrelation"] = vm.decorrelation(profile, "corrected_model_coherence")
    metrics["data_decorrelation"] = vm.decorrelation(profile, "data_model_coherence")
    return metrics, profile


def _worst(entries) -> float:
    scores = [e["score"] for e in entries if e["in_overall"] and e["score"] is not None]
    return min(scores) if scores else float("nan")


def _all_entries(node):
    """Every scored entry under ``node`` (dicts and lists, any depth)."""
    if isinstance(node, dict):
        if "score" in node and "in_overall" in node:
            yield node
            return
        for value in node.values():
            yield from _all_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from _all_entries(value)


def run_qa(ms, caltable_paths=(), calibrator=None, thresholds=None, truth=None,
           primary_beam=True, row_chunk=None, scheduler=None,
           visibility_qa=None) -> QAResult:  # fmt: skip
    """Visibility and caltable QA of ``ms``; missing columns and bad tables are reported, not fatal.

    ``calibrator`` (a catalog entry) gives each field's phasing context and
    the stale-model test; without it both are skipped (phased context assumed).
    ``truth`` is a simulation truth file for the caltables' error against it.
    ``visibility_qa``: the visibility pass's results, computed already (by the run).
    """
    ms = reads.require_ms(ms)
    scorer = Scorer(resolve_thresholds(thresholds))
    skipped: list[str] = []
    started = time.perf_counter()

    geometry = None
    stale_context = None
    if calibrator is not None:
        from dsa110_contimg.phasing.geometry import field_geometry

        geometry = {g.field_id: g for g in field_geometry(ms, calibrator)}
        stale_context = calibrator_view(ms, calibrator, primary_beam)
    else:
        skipped.append(
            "stale-model test and phasing context skipped: no calibrator known "
            "(give --calibrator); phase scatter judged as for a phased calibrator"
        )
    spw_results, present = visibility_qa or compute_visibility_qa(
        ms, stale_context, row_chunk, scheduler
    )
    vis_seconds = time.perf_counter() - started
    has_model = "MODEL_DATA" in present or stale_context is not None
    has_corrected = "CORRECTED_DATA" in present
    if "MODEL_DATA" not in present and has_model:
        skipped.append(
            f"MODEL_DATA missing: {calibrator.name} predicted for this QA (not written); "
            "stale-model test skipped"
        )
    if not has_model:
        skipped.append(
            "MODEL_DATA missing: DATA-MODEL and CORRECTED-MODEL phase scatter, amplitude "
            "ratios vs MODEL, decorrelation and the stale-model test skipped "
            "(run write-model or calibrate)"
        )
    if not has_corrected:
        skipped.append(
            "CORRECTED_DATA missing: CORRECTED metrics and the before/after comparison skipped "
            "(run calibrate/apply)"
        )
    if not spw_results:
        raise ContimgError(f"{ms}: no rows to assess (empty selection)")

    total = spw_results[0].partials
    for r in spw_results[1:]:
        total = total.plus_spw(r.partials)
    n_field = total.scalars.shape[0]
    field_ids = [f for f in range(n_field) if total.scalars[f, vk.N_TOTAL] > 0]
    if not field_ids:
        raise ContimgError(f"{ms}: no cross-correlation visibilities to assess")
    if sum(total.scalars[f, vk.N_USED] for f in field_ids) == 0:
        skipped.append("no usable visibilities: everything is flagged, zero or NaN")
    model_fields = [f for f in field_ids if total.scalars[f, vk.DM_N] > 0]
    target_fields = [f for f in field_ids if f not in model_fields]
    array = array_of(ms)
    uv_max = array.uv_max_m()
    units = reads.data_units(ms)
    field_names = [str(n) for n in reads.read_subtable(ms, "FIELD", columns=["NAME"]).NAME.values]
    antenna_names = list(array.names)

    def aligned(fields) -> bool:
        if geometry is None:
            return True
        return all(geometry[f].separation_arcmin < ALIGNED_ARCMIN for f in fields)

    # The calibrator fields are those phased to the calibrator, when any are;
    # other fields with a model are judged one by one in their own context.
    calibrator_fields = [f for f in model_fields if aligned([f])] or model_fields

    def coherence_of(fields, spws=None) -> float | None:
        parts = [
            r.model_coherence[fields].sum(axis=0)
            for r in spw_results
            if r.model_coherence is not None and (spws is None or r.spw in spws)
        ]
        if not parts or not fields:
            return None
        value = kernels.finalise_model_coherence(sum(parts))
        return value if math.isfinite(value) else None

    groups = {"calibrator": calibrator_fields, "target": target_fields}
    visibilities: dict = {"uv_profile": {}, "uv_max_m": uv_max}
    for role, fields in groups.items():
        if not fields:
            continue
        metrics, profile = _group_metrics(total.select(fields), uv_max)
        visibilities[role] = {
            "fields": fields,
            "metrics": _visibility_metrics(
                metrics,
                scorer,
                role,
                aligned(fields),
                has_corrected,
                coherence_of(fields),
                units,
            ),  # fmt: skip
            "info": _info(metrics),
        }
        visibilities["uv_profile"][role] = profile
    visibilities["spws"] = []
    for r in spw_results:
        entry = {"spw": r.spw}
        for role, fields in groups.items():
            present_fields = [f for f in fields if r.partials.scalars[f, vk.N_TOTAL] > 0]
            if not present_fields:
                continue
            metrics, _ = _group_metrics(r.partials.select(present_fields), uv_max)
            entry[role] = {
                "metrics": _visibility_metrics(
                    metrics, scorer, role, aligned(present_fields), has_corrected,
                    coherence_of(present_fields, {r.spw}), units,
                ),
                "info": _info(metrics),
            }  # fmt: skip
        visibilities["spws"].append(entry)
    visibilities["fields"] = []
    for f in field_ids:
        role = "calibrator" if f in model_fields else "target"
        metrics, _ = _group_metrics(total.select([f]), uv_max)
        g = geometry[f] if geometry else None
        visibilities["fields"].append({
            "field": f,
            "name": field_names[f],
            "role": role,
            "separation_arcmin": None if g is None else g.separation_arcmin,
            "phasing_context": "phased" if aligned([f]) else "offset",
            "metrics": _visibility_metrics(metrics, scorer, role, aligned([f]), has_corrected,
                                           coherence_of([f]), units),
            "info": _info(metrics),
        })  # fmt: skip
    visibilities["antennas"] = _antenna_table(total, spw_results, calibrator_fields, array)

    tables = [caltable_qa(p, ms, scorer, array, truth, units) for p in caltable_paths]
    summary = {
        "schema": SCHEMA,
        "version": VERSION,
        "ms": str(ms),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "calibrator": None if calibrator is None else {
            "name": calibrator.name, "ra_deg": calibrator.ra_deg, "dec_deg": calibrator.dec_deg,
        },
        "array": {
            "telescope": array.telescope,
            "n_antennas_with_data": int(array.has_data.sum()),
            "n_antennas_listed": len(array.names),
            "dish_diameter_m": array.dish_diameter_m,
            "dish_from_ms": array.dish_from_ms,
        },
        "columns": {"MODEL_DATA": "MODEL_DATA" in present, "CORRECTED_DATA": has_corrected},
        "data_units": units,
        "model_predicted": has_model and "MODEL_DATA" not in present,
        "skipped": skipped,
        "calibrator_fields": calibrator_fields,
        "target_fields": target_fields,
        "visibilities": visibilities,
        "caltables": tables,
        "thresholds": {k: vars(t) for k, t in scorer.thresholds.items()},
    }  # fmt: skip
    entries = list(_all_entries({"v": visibilities, "c": tables}))
    overall = _worst(entries)
    summary["overall_score"] = None if math.isnan(overall) else round(overall, 4)
    summary["overall_verdict"] = "not measured" if math.isnan(overall) else verdict_of(overall)
    summary["verdicts"] = _headline_verdicts(visibilities, tables)
    summary["timings"] = {
        "visibility_pass_s": round(vis_seconds, 3),
        "total_s": round(time.perf_counter() - started, 3),
    }
    plots = {
        "spw_results": spw_results,
        "calibrator_fields": calibrator_fields,
        "target_fields": target_fields,
        "antenna_names": antenna_names,
        "antennas_with_data": array.with_data,
        "caltables": [bandpass_plot_data(p) for p in caltable_paths],
    }
    return QAResult(summary, plots)


def _antenna_table(total, spw_results, calibrator_fields, array) -> list[dict]:
    """One row per antenna with data (antennas listed without rows are left out)."""
    antenna_names = array.names
    if calibrator_fields:
        cal = total.select(calibrator_fields)
        data_scatter = vm.antenna_phase_scatter_deg(cal, "data")
        corrected_scatter = vm.antenna_phase_scatter_deg(cal, "corrected")
    else:
        data_scatter = corrected_scatter = np.full(len(antenna_names), np.nan)
    flagged = sum(r.partials.flag_map[:, :, 0].sum(axis=1) for r in spw_results)
    counted = sum(r.partials.flag_map[:, :, 1].sum(axis=1) for r in spw_results)
    rows = []
    for a in array.with_data:
        name = antenna_names[a]
        rows.append({
            "antenna": int(a),
            "name": name,
            "data_model_phase_scatter_deg": finite_or_none(data_scatter[a]),
            "corrected_model_phase_scatter_deg": finite_or_none(corrected_scatter[a]),
            "flagged_fraction": finite_or_none(flagged[a] / counted[a]) if counted[a] else None,
        })  # fmt: skip
    return rows


def _headline_verdicts(visibilities, tables) -> list[str]:
    """Every scored line that is not good, worst first; then the key good ones."""
    scored = []
    for where, node in (("calibrator", visibilities.get("calibrator")),
                        ("target", visibilities.get("target"))):  # fmt: skip
        if node:
            scored += [(f"{where} fields: ", e) for e in node["metrics"].values()]
    for t in tables:
        name = Path(t["path"]).name
        if "error" in t:
            scored.append(
                (
                    f"caltable {name}: ",
                    {"score": 0.0, "line": t["error"], "in_overall": True, "verdict": "error"},
                )
            )
            continue
        for s in t["spws"]:
            scored += [(f"caltable {name} spw {s['spw']}: ", e) for e in s["metrics"].values()]
    measured = [(p, e) for p, e in scored if e["score"] is not None]
    measured.sort(key=lambda pe: pe[1]["score"])
    lines = [p + e["line"] + ("" if e["in_overall"] else " [before calibration]")
             for p, e in measured if e["verdict"] != GOOD]  # fmt: skip
    if not lines:
        lines = [p + e["line"] for p, e in measured[:5]]
    return lines


def format_qa(summary: dict) -> str:
    """The terminal table: per-SPW headline metrics, then the verdict lines."""
    lines = [
        f"QA of {summary['ms']}: overall {summary['overall_verdict']}"
        + (f" (score {summary['overall_score']:.2f})" if summary["overall_score"] is not None
           else ""),
    ]  # fmt: skip
    lines += [f"  note: {s}" for s in summary["skipped"]]
    header = (" spw  role        flag   D-M(deg) C-M(deg) |D|/|M| |C|/|M| |C|/|D| filled  "
              "score  verdict")  # fmt: skip
    lines.append(header)
    for entry in summary["visibilities"]["spws"]:
        for role in ("calibrator", "target"):
            if role not in entry:
                continue
            m = entry[role]["metrics"]
            cells = [_cell(m, k, w, fmt) for k, w, fmt in (
                ("flagged_fraction", 6, ".1%"), ("data_model_phase_scatter_deg", 8, ".1f"),
                ("corrected_model_phase_scatter_deg", 8, ".1f"),
                ("median_data_model_amp_ratio", 7, ".3f"),
                ("median_corrected_model_amp_ratio", 7, ".3f"),
                ("median_corrected_data_amp_ratio", 7, ".3f"),
                ("corrected_filled_fraction", 6, ".1%"),
            )]  # fmt: skip
            worst = _worst(m.values())
            lines.append(
                f" {entry['spw']:3d}  {role:10s} "
                + " ".join(cells)
                + (f"  {worst:5.2f}  {verdict_of(worst)}" if math.isfinite(worst) else "  -")
            )
    for t in summary["caltables"]:
        name = Path(t["path"]).name
        if "error" in t:
            lines.append(f" caltable {name}: {t['error']}")
            continue
        worst = _worst([e for s in t["spws"] for e in s["metrics"].values()])
        dead = t["fully_flagged_antennas"]
        lines.append(
            f" caltable {name} ({t['kind']}): "
            + (f"worst score {worst:.2f} {verdict_of(worst)}" if math.isfinite(worst) else "-")
            + (f"; fully flagged antennas: {', '.join(dead)}" if dead else "")
        )
    lines.append("verdicts:")
    lines += [f"  {line}" for line in summary["verdicts"]]
    return "\n".join(lines)


def _cell(metrics, key, width, fmt) -> str:
    entry = metrics.get(key)
    if entry is None or entry["value"] is None:
        return "-".rjust(width)
    return format(entry["value"], fmt).rjust(width)
