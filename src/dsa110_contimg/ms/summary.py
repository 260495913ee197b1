"""What an MS holds: structure from the subtables, per-SPW figures in one lazy pass."""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np

from dsa110_contimg.ms import reads
from dsa110_contimg.ms.antennas import array_of


@dataclass(frozen=True)
class SpwSummary:
    spw: int
    n_chan: int
    freq_low_mhz: float
    freq_high_mhz: float
    n_rows: int
    flagged_fraction: float
    zero_fraction: float
    mean_cross_amp: float


@dataclass(frozen=True)
class MsSummary:
    path: str
    telescope: str
    n_rows: int
    columns: tuple[str, ...]
    antenna_names: tuple[str, ...]  # antennas with data (unnamed ones as #index)
    n_antennas_listed: int  # ANTENNA rows, with or without data
    dish_diameter_m: float
    dish_from_ms: bool
    corr_names: tuple[str, ...]
    field_names: tuple[str, ...]
    field_phase_dir_deg: tuple[tuple[float, float], ...]
    time_range_mjd_s: tuple[float, float]
    spws: tuple[SpwSummary, ...]

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)


def summarise_ms(path) -> MsSummary:
    """Structure plus per-SPW flag, zero and amplitude figures, computed in one pass."""
    path = reads.require_ms(path)
    array = array_of(path)
    field = reads.read_subtable(path, "FIELD", columns=["NAME", "PHASE_DIR"])
    pol = reads.read_subtable(path, "POLARIZATION", columns=["CORR_TYPE"])
    freqs = reads.chan_freq_hz(path)
    ddid_spw = reads.spw_of_ddid(path)
    columns = reads.main_columns(path)

    datasets = reads.read_visibility_datasets(
        path, ["DATA", "FLAG", "ANTENNA1", "ANTENNA2", "TIME"], group_cols=("DATA_DESC_ID",)
    )
    per_dataset = []
    for ds in datasets:
        cross = ds.ANTENNA1 != ds.ANTENNA2
        amp = np.abs(ds.DATA).where(~ds.FLAG & cross)
        per_dataset.append(
            (
                ds.sizes["row"],
                ds.FLAG.sum(),
                ds.FLAG.size,
                (ds.DATA == 0).sum(),
                amp.mean(skipna=True),
                ds.TIME.min(),
                ds.TIME.max(),
            )
        )
    (computed,) = dask.compute(per_dataset)

    by_spw: dict[int, list] = {}
    for ds, values in zip(datasets, computed, strict=True):
        by_spw.setdefault(int(ddid_spw[ds.attrs["DATA_DESC_ID"]]), []).append(values)
    spws = []
    for spw, rows in sorted(by_spw.items()):
        n_rows = sum(int(r[0]) for r in rows)
        n_vis = sum(int(r[2]) for r in rows)
        spws.append(
            SpwSummary(
                spw=spw,
                n_chan=len(freqs[spw]),
                freq_low_mhz=float(freqs[spw].min() / 1e6),
                freq_high_mhz=float(freqs[spw].max() / 1e6),
                n_rows=n_rows,
                flagged_fraction=sum(float(r[1]) for r in rows) / max(n_vis, 1),
                zero_fraction=sum(float(r[3]) for r in rows) / max(n_vis, 1),
                mean_cross_amp=_weighted_mean([(float(r[4]), int(r[0])) for r in rows]),
            )
        )
    times = [(float(r[5]), float(r[6])) for r in computed]
    return MsSummary(
        path=str(path),
        telescope=array.telescope,
        n_rows=sum(s.n_rows for s in spws),
        columns=tuple(columns),
        antenna_names=tuple(array.names_with_data),
        n_antennas_listed=len(array.names),
        dish_diameter_m=array.dish_diameter_m,
        dish_from_ms=array.dish_from_ms,
        corr_names=tuple(reads.CORR_NAMES.get(int(c), str(c)) for c in pol.CORR_TYPE.values[0]),
        field_names=tuple(str(n) for n in field.NAME.values),
        field_phase_dir_deg=tuple(
            (float(ra), float(dec)) for ra, dec in np.degrees(field.PHASE_DIR.values[:, 0, :])
        ),
        time_range_mjd_s=(min(t[0] for t in times), max(t[1] for t in times)),
        spws=tuple(spws),
    )


def format_summary(summary: MsSummary) -> str:
    names = summary.antenna_names
    unused = summary.n_antennas_listed - len(names)
    lines = [
        f"Measurement Set {summary.path} ({summary.telescope or 'telescope not named'})",
        f"  rows {summary.n_rows}, antennas with data {len(names)}"
        + (f" ({names[0]} .. {names[-1]})" if names else "")
        + (f"; {unused} more listed without data" if unused else "")
        + f", correlations {' '.join(summary.corr_names)}",
        f"  dishes {summary.dish_diameter_m:g} m"
        + ("" if summary.dish_from_ms else " (DSA-110's: the MS gives no DISH_DIAMETER)"),
        f"  fields {len(summary.field_names)} "
        f"({summary.field_names[0]} .. {summary.field_names[-1]}), "
        f"duration {summary.time_range_mjd_s[1] - summary.time_range_mjd_s[0]:.1f} s between "
        "first and last integration centres",
        f"  columns: {', '.join(c for c in summary.columns if c.endswith('DATA'))}",
        "  spw  chan   freq range (MHz)      rows   flagged   zeros   mean |cross|",
    ]
    for s in summary.spws:
        lines.append(
            f"  {s.spw:3d}  {s.n_chan:4d}  {s.freq_low_mhz:8.3f}-{s.freq_high_mhz:8.3f}  "
            f"{s.n_rows:8d}   {s.flagged_fraction:6.1%}  {s.zero_fraction:6.1%}   "
            f"{s.mean_cross_amp:8.3f}"
        )
    return "\n".join(lines)


def _weighted_mean(values_and_rows) -> float:
    pairs = [(v, n) for v, n in values_and_rows if np.isfinite(v)]
    if not pairs:
        return float("nan")
    return float(sum(v * n for v, n in pairs) / sum(n for _, n in pairs))
