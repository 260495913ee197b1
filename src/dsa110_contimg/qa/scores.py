"""Scores in [0, 1] from metric values, with the pipeline's verdict convention.

A score <= 0.33 is an error, <= 0.66 a warning, <= 0.9 suboptimal, above 0.9
good. Each threshold names five anchor values, scored 1.0 (``best``), 0.9
(``good``), 0.66 (``warning``), 0.33 (``error``) and 0.0 (``worst``); scores
are linear between anchors. Two-sided ratios (``ratio=True``) are scored on
their distance from 1 in log space, so 0.5 and 2 score alike. The defaults
follow the production notes (see ``../README.md``, "QA thresholds"); the
phase-scatter limits depend on whether the field is phased to the calibrator.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dsa110_contimg.errors import ContimgError
from dsa110_contimg.qa import kernels

ERROR, WARNING, SUBOPTIMAL, GOOD = "error", "warning", "suboptimal", "good"
ANCHOR_SCORES = (1.0, 0.9, 0.66, 0.33, 0.0)


@dataclass(frozen=True)
class Threshold:
    label: str
    best: float
    good: float
    warning: float
    error: float
    worst: float
    unit: str = ""
    ratio: bool = False  # a two-sided ratio: score |log10 value| against log10 anchors

    def anchors(self) -> tuple[float, ...]:
        values = (self.best, self.good, self.warning, self.error, self.worst)
        return tuple(abs(math.log10(v)) for v in values) if self.ratio else values


def verdict_of(score: float) -> str:
    if score <= 0.33:
        return ERROR
    if score <= 0.66:
        return WARNING
    if score <= 0.9:
        return SUBOPTIMAL
    return GOOD


def score_value(value: float, threshold: Threshold) -> float:
    """Piecewise-linear score of ``value``; NaN stays NaN (not measured)."""
    if value is None or not math.isfinite(value):
        return float("nan")
    if threshold.ratio:
        if value <= 0:
            return 0.0
        value = abs(math.log10(value))
    xs = list(threshold.anchors())
    ys = list(ANCHOR_SCORES)
    if xs[0] > xs[-1]:  # higher is better
        xs, ys = xs[::-1], ys[::-1]
    if value <= xs[0]:
        return ys[0]
    if value >= xs[-1]:
        return ys[-1]
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False):
        if x0 <= value <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (value - x0) / (x1 - x0)
    return float("nan")


def _fmt(value: float, unit: str) -> str:
    return f"{value:.3g}{(' ' + unit) if unit else ''}"


def describe(value: float, threshold: Threshold, score: float) -> str:
    """The verdict line: the value, its verdict and the limit it met or crossed."""
    t = threshold
    if not math.isfinite(score):
        return f"{t.label}: not measured"
    verdict = verdict_of(score)
    higher_better = t.best > t.worst
    if t.ratio:
        bands = {GOOD: t.good, SUBOPTIMAL: t.warning, WARNING: t.error}
        limit = bands.get(verdict, t.error)
        span = f"{_fmt(1 / limit, '')}-{_fmt(limit, t.unit)}"
        where = "within" if verdict != ERROR else "outside"
        return f"{t.label} {_fmt(value, t.unit)}: {verdict} ({where} {span})"
    word_ok, word_bad = ("above", "at or below") if higher_better else ("below", "at or above")
    if verdict == GOOD:
        rule = f"{word_ok} the good limit {_fmt(t.good, t.unit)}"
    elif verdict == SUBOPTIMAL:
        rule = f"{word_bad} the good limit {_fmt(t.good, t.unit)}"
    elif verdict == WARNING:
        rule = f"{word_bad} the warning limit {_fmt(t.warning, t.unit)}"
    else:
        rule = f"{word_bad} the error limit {_fmt(t.error, t.unit)}"
    return f"{t.label} {_fmt(value, t.unit)}: {verdict} ({rule})"


DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    # visibilities; the phase-scatter limits of a field phased to the calibrator
    "phase_scatter_aligned_deg": Threshold("phase scatter (phased to the calibrator)",
                                           0, 30, 45, 120, 180, "deg"),
    "phase_scatter_offset_deg": Threshold("phase scatter (calibrator off the phase centre)",
                                          0, 105, 120, 140, 180, "deg"),
    # CORRECTED vs MODEL after calibration: the excess over thermal noise, any phasing
    # (per baseline: 20 deg is about 14 deg of residual phase per antenna)
    "corrected_phase_excess_deg": Threshold("CORRECTED-MODEL phase scatter", 0, 10, 20, 45, 180,
                                            "deg"),
    "median_data_model_amp_ratio": Threshold("median |DATA|/|MODEL|", 1, 2, 5, 10, 100,
                                             ratio=True),
    "median_corrected_model_amp_ratio": Threshold("median |CORRECTED|/|MODEL|", 1, 1.15, 1.3,
                                                  2, 10, ratio=True),
    "corrected_model_amp_ratio": Threshold("|CORRECTED|/|MODEL| (vector mean, unbiased by noise)",
                                           1, 1.15, 1.3, 2, 10, ratio=True),
    "median_corrected_data_amp_ratio": Threshold("median |CORRECTED|/|DATA|", 1, 3, 10, 30,
                                                 1000, ratio=True),
    "corrected_filled_fraction": Threshold("CORRECTED_DATA filled fraction", 1, 0.99, 0.9,
                                           0.5, 0),
    "flagged_fraction": Threshold("flagged fraction", 0, 0.1, 0.3, 0.9, 1),
    "zero_fraction": Threshold("exact-zero fraction of unflagged data", 0, 0.01, 0.05, 0.2, 1),
    "nonfinite_fraction": Threshold("NaN/Inf fraction of unflagged data", 0, 1e-4, 0.01,
                                    0.1, 1),
    "corrected_decorrelation": Threshold("CORRECTED coherence, long/short baselines", 1, 0.95,
                                         0.85, 0.7, 0),
    "model_coherence": Threshold("MODEL_DATA vs fresh prediction", 1, 0.99, 0.98, 0.9, 0),
    "spectral_coherence_gain": Threshold("spectral coherence CORRECTED/DATA", 1.05, 1.0, 0.95,
                                         0.8, 0.5),
    # calibration tables
    "caltable_flagged_fraction": Threshold("solutions flagged", 0, 0.05, 0.3, 0.6, 1),
    "n_fully_flagged_antennas": Threshold("fully flagged antennas", 0, 0.01, 1, 10, 50),
    "snr_median": Threshold("median solution SNR", 100, 20, 5, 3, 0),
    "amp_out_of_range_fraction": Threshold("gain amplitudes outside 0.1-10", 0, 0.001, 0.01,
                                           0.1, 1),
    # gains in the correlator's units: their relative spread over antennas and time
    "gain_amp_scatter": Threshold("gain amplitude spread (robust std / median)", 0, 0.1, 0.3,
                                  1.0, 10),
    "gain_phase_scatter_deg": Threshold("gain phase scatter over time", 0, 30, 60, 90, 180,
                                        "deg"),
    "bandpass_amp_roughness": Threshold("bandpass amplitude roughness", 0, 0.02, 0.05, 0.1, 1),
    "bandpass_amp_error": Threshold("bandpass amplitude error vs truth", 0, 0.02, 0.05, 0.1, 1),
    "bandpass_phase_error_deg": Threshold("bandpass phase error vs truth", 0, 2, 5, 10, 180,
                                          "deg"),
}  # fmt: skip


def resolve_thresholds(overrides: dict | None = None) -> dict[str, Threshold]:
    """Defaults with ``{name: {anchor: value}}`` overrides (from the QA config YAML)."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    if overrides is not None and not isinstance(overrides, dict):
        raise ContimgError("QA thresholds must be a mapping {name: {anchor: value}}")
    for name, changes in (overrides or {}).items():
        if name not in thresholds:
            raise ContimgError(
                f"unknown QA threshold {name!r}; known: {', '.join(sorted(thresholds))}"
            )
        if not isinstance(changes, dict):
            raise ContimgError(f"QA threshold {name} must be a mapping {{anchor: value}}")
        allowed = {"best", "good", "warning", "error", "worst"}
        unknown = set(changes) - allowed
        if unknown:
            raise ContimgError(
                f"QA threshold {name}: unknown keys {sorted(unknown)}; use {sorted(allowed)}"
            )
        for key, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ContimgError(f"QA threshold {name}.{key} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ContimgError(f"QA threshold {name}.{key} must be finite, not {value!r}")
        changed = dataclasses.replace(thresholds[name], **{k: float(v) for k, v in changes.items()})
        _check_anchor_order(name, changed)
        thresholds[name] = changed
    return thresholds


def _check_anchor_order(name: str, threshold: Threshold) -> None:
    """Anchors best, good, warning, error, worst must run one way (ratios: positive)."""
    values = (threshold.best, threshold.good, threshold.warning, threshold.error, threshold.worst)
    if threshold.ratio and min(values) <= 0:
        raise ContimgError(f"QA threshold {name}: ratio anchors must be positive, got {values}")
    xs = threshold.anchors()
    steps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    if not (all(d >= 0 for d in steps) or all(d <= 0 for d in steps)) or xs[0] == xs[-1]:
        raise ContimgError(
            f"QA threshold {name}: anchors best, good, warning, error, worst must run in one "
            f"direction, got {values}"
        )


class Scorer:
    """Scored metric entries of qa.json under one set of thresholds."""

    def __init__(self, thresholds):
        self.thresholds = thresholds

    def entry(self, value, threshold_key, in_overall=True, not_judged: str | None = None) -> dict:
        """A scored metric; ``not_judged`` says why a measured value gets no verdict."""
        t = self.thresholds[threshold_key]
        value = None if value is None or not math.isfinite(value) else float(value)
        score = score_value(value, t) if value is not None else float("nan")
        measured = math.isfinite(score)
        entry = {
            "value": value,
            "score": round(score, 4) if measured else None,
            "verdict": verdict_of(score) if measured else "not measured",
            "line": describe(value if value is not None else float("nan"), t, score),
            "in_overall": bool(in_overall and measured),
            "threshold": threshold_key,
        }
        if not_judged and measured:
            entry.update(score=None, verdict="not judged", in_overall=False,
                         line=f"{t.label} {value:.3g}: not judged ({not_judged})")  # fmt: skip
        return entry

    def phase_entry(self, measured, floor, threshold_key, in_overall=True,
                    not_judged: str | None = None) -> dict:  # fmt: skip
        """Phase scatter judged by its excess over the thermal floor; all three reported."""
        measured = float("nan") if measured is None else measured
        floor = float("nan") if floor is None else floor
        excess = kernels.excess_scatter_deg(measured, floor)
        entry = self.entry(excess, threshold_key, in_overall, not_judged)
        entry["value"] = finite_or_none(measured)
        entry["thermal_floor_deg"] = finite_or_none(floor)
        entry["excess_deg"] = finite_or_none(excess)
        if entry["value"] is not None and entry["thermal_floor_deg"] is not None:
            label = self.thresholds[threshold_key].label
            entry["line"] = entry["line"].replace(
                label,
                f"{label} {measured:.0f} deg (thermal noise alone {floor:.0f} deg), excess",
                1,
            )
        return entry


def finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
