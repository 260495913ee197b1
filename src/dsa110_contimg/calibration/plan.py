"""The calibration plan: which MS, SPWs, fields and tables, as plain frozen data.

Built before any graph and printed by ``--dry-run``. Naming is predictable:
for an MS ``<stem>.ms`` and output directory ``OUT``

* calibrated Multi-MS: ``OUT/<stem>.cal.mms`` (DATA, MODEL_DATA, CORRECTED_DATA;
  one sub-MS per SPW);
* per-SPW caltables: ``OUT/<stem>.caltables/<stem>_spwNN_<step>``, or
  ``..._allspw_<step>`` for solves combined over SPWs;
* merged caltables (one per step, every SPW): ``OUT/<stem>_<step>``, where step
  is ``prebp``, ``kcal``, ``bpcal``, ``gpcal`` (first gain interval, default
  ``inf``), ``2gcal`` (second, default 60 s), ...

Every product is built in ``OUT/.<stem>.cal.work`` (tables under its
``products/`` folder, at the same relative path they are published to) and all
of one MS's products are renamed into place together, the Multi-MS last, once
every step of that MS has finished: an interrupted or failed run leaves no
product under a final name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg.calibration.config import CalibrationConfig

ALL_SPW = -1


def gain_step_name(index: int) -> str:
    """``gpcal`` for the first gain interval, ``2gcal``, ``3gcal``, ... after it."""
    return "gpcal" if index == 0 else f"{index + 1}gcal"


@dataclass(frozen=True)
class SpwPiece:
    """One (MS, SPW) partition: its working sub-MS and the tables it solves."""

    spw: int
    sub_ms: str
    averaged_ms: str | None
    tables: tuple[tuple[str, str], ...]  # (step, caltable path), solve order

    def table(self, step: str) -> str | None:
        return dict(self.tables).get(step)


@dataclass(frozen=True)
class ObservationPlan:
    """Everything one MS needs, calibrator or target."""

    ms: str
    stem: str
    role: str  # "calibrator" (solve and apply) or "target" (apply only)
    spws: tuple[int, ...]
    n_spw_total: int
    cal_fields: tuple[int, ...]  # fields the solves use (calibrator role)
    apply_fields: tuple[int, ...]  # fields whose rows the output holds
    phasecenter: str | None  # calibrator direction when the cal fields are rephased
    refant: str | None
    work_dir: str
    output_mms: str
    pieces: tuple[SpwPiece, ...]
    combined_tables: tuple[tuple[str, str], ...]  # (step, table) solved over all SPWs
    merged_tables: tuple[tuple[str, str], ...]  # (step, merged table path)
    solutions_from: str | None = None  # calibrator MS whose tables a target uses
    given_tables: tuple[str, ...] = ()  # for `apply`: tables named by the user
    antennas_with_data: tuple[int, ...] = ()  # whose solutions count (empty: all)
    equal_weights: bool = False  # WEIGHT holds no positive value: the working copy uses 1

    def merged(self, step: str) -> str | None:
        return dict(self.merged_tables).get(step)

    @property
    def phasecenter_rad(self) -> tuple[float, float]:
        """``phasecenter`` (``J2000 <ra>deg <dec>deg``) as (ra, dec) in radians."""
        _, ra, dec = self.phasecenter.split()
        return np.radians(float(ra.removesuffix("deg"))), np.radians(float(dec.removesuffix("deg")))

    @property
    def output_dir(self) -> Path:
        return Path(self.output_mms).parent

    @property
    def products_dir(self) -> Path:
        """Where tables are built before publishing (mirrors the output directory)."""
        return Path(self.work_dir) / "products"

    def staged(self, final: str | None) -> str | None:
        """The path ``final`` (a product of this MS) is built at before publishing."""
        if final is None:
            return None
        return str(self.products_dir / Path(final).relative_to(self.output_dir))

    def published(self, path: str) -> str:
        """The final path of a product built at ``path`` (other paths pass unchanged)."""
        try:
            relative = Path(path).relative_to(self.products_dir)
        except ValueError:
            return path
        return str(self.output_dir / relative)

    @property
    def table_dir(self) -> Path:
        return self.output_dir / f"{self.stem}.caltables"


@dataclass(frozen=True)
class CalibrationPlan:
    calibrator: str | None
    observations: tuple[ObservationPlan, ...]
    config: CalibrationConfig
    output_dir: str

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)


def solve_steps(config: CalibrationConfig) -> list[tuple[str, bool]]:
    """(step, combined over SPWs?) in solve order."""
    steps = []
    if config.prebp.enabled:
        steps.append(("prebp", config.combine_spw))
    if config.delay.enabled:
        steps.append(("kcal", False))
    if config.bandpass.enabled:
        steps.append(("bpcal", False))
    if config.gains.enabled:
        steps += [(gain_step_name(i), config.combine_spw) for i in range(len(config.gains.solints))]
    return steps


def applied_steps(config: CalibrationConfig) -> list[str]:
    """The tables CORRECTED_DATA is made with, in apply order."""
    steps = []
    if config.delay.enabled:
        steps.append("kcal")
    if config.bandpass.enabled:
        steps.append("bpcal")
    if config.gains.enabled:
        steps.append(gain_step_name(list(config.gains.solints).index(config.apply.gain_solint)))
    return steps


def _stem(ms: str) -> str:
    name = Path(ms).name
    for suffix in (".ms", ".mms", ".MS"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def plan_observation(
    ms: str,
    role: str,
    spws,
    n_spw_total: int,
    config: CalibrationConfig,
    output_dir,
    cal_fields=(),
    apply_fields=(),
    phasecenter: str | None = None,
    refant: str | None = None,
    solutions_from: str | None = None,
    given_tables=(),
    antennas_with_data=(),
    equal_weights: bool = False,
) -> ObservationPlan:
    stem = _stem(ms)
    out = Path(output_dir).absolute()
    work = out / f".{stem}.cal.work"
    table_dir = out / f"{stem}.caltables"
    steps = solve_steps(config) if role == "calibrator" else []
    pieces = []
    for spw in spws:
        tables = tuple(
            (step, str(table_dir / f"{stem}_spw{spw:02d}_{step}"))
            for step, combined in steps
            if not combined
        )
        averaged = (
            str(work / "averaged" / f"{stem}.spw{spw:02d}.ms")
            if role == "calibrator" and config.fast.enabled
            else None
        )
        sub_ms = work / f"{stem}.cal.mms" / "SUBMSS" / f"{stem}.spw{spw:02d}.ms"
        pieces.append(SpwPiece(spw, str(sub_ms), averaged, tables))
    combined = tuple(
        (step, str(table_dir / f"{stem}_allspw_{step}")) for step, combined in steps if combined
    )
    merged = tuple((step, str(out / f"{stem}_{step}")) for step, _ in steps)
    return ObservationPlan(
        ms=str(Path(ms).absolute()),
        stem=stem,
        role=role,
        spws=tuple(spws),
        n_spw_total=n_spw_total,
        cal_fields=tuple(cal_fields),
        apply_fields=tuple(apply_fields),
        phasecenter=phasecenter,
        refant=refant,
        work_dir=str(work),
        output_mms=str(out / f"{stem}.cal.mms"),
        pieces=tuple(pieces),
        combined_tables=combined,
        merged_tables=merged,
        solutions_from=solutions_from,
        given_tables=tuple(str(t) for t in given_tables),
        antennas_with_data=tuple(int(a) for a in antennas_with_data),
        equal_weights=equal_weights,
    )


def format_plan(plan: CalibrationPlan) -> str:
    """What ``--dry-run`` prints: every MS, SPW, field set and table, nothing touched."""
    lines = [f"calibration plan -> {plan.output_dir}"]
    if plan.calibrator:
        lines.append(f"calibrator: {plan.calibrator}")
    for obs in plan.observations:
        lines.append(f"{obs.role}: {obs.ms}")
        lines.append(f"  SPWs: {','.join(str(s) for s in obs.spws)} of {obs.n_spw_total}")
        if obs.role == "calibrator":
            lines.append(f"  solve on fields: {_ranges(obs.cal_fields)}; refant {obs.refant}")
            if obs.phasecenter:
                lines.append(f"  rephase those fields to {obs.phasecenter}")
        lines.append(f"  apply to fields: {_ranges(obs.apply_fields) or 'all'}")
        if obs.solutions_from:
            lines.append(f"  with solutions from {obs.solutions_from}")
        for table in obs.given_tables:
            lines.append(f"  with table {table}")
        lines.append(f"  output: {obs.output_mms}")
        for step, path in obs.combined_tables:
            lines.append(f"  {step} (all SPWs): {path}")
        for piece in obs.pieces:
            for step, path in piece.tables:
                lines.append(f"  spw {piece.spw:2d} {step}: {path}")
        for step, path in obs.merged_tables:
            lines.append(f"  merged {step}: {path}")
    return "\n".join(lines)


def _ranges(ids) -> str:
    ids = sorted(ids)
    if not ids:
        return ""
    parts, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}~{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)
