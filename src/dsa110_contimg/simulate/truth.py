"""The truth saved beside a synthetic MS: ``<name>.ms.truth.npz``.

Schema ``dsa110_contimg.simulation_truth`` version 1. The file is a numpy
``.npz`` archive holding:

``meta`` (0-d string)
    JSON: ``schema``, ``version``, ``config`` (every simulation parameter,
    including ``seed``), ``antenna_names``, ``corr_names``, ``spw_chan_freq_hz``,
    ``time_mjd_s`` (integration midpoints, UTC), ``field_names``,
    ``field_ra_deg``/``field_dec_deg`` (phase centres), ``sky`` (list of
    point sources: name, ra_deg, dec_deg, flux_jy, ref_freq_hz,
    spectral_index), ``noise_sigma_jy`` (per SPW, per real/imag part of one
    correlation, before gains), ``conventions`` (text).
``bandpass`` (ant, spw, chan, corr) complex128
    The per-antenna bandpass; zero for dead antennas.
``phase_drift_rad`` (ant, time, corr) float64
    Slow phase drift; the gain of antenna ``a`` at integration ``t`` is
    ``bandpass[a, spw] * exp(1j * phase_drift_rad[a, t])``.
``rfi_cells`` (k, 3) int: (time index, spw, chan) that carry an RFI spike.
``zero_rows`` (k, 4) int: (time index, spw, antenna1, antenna2) set to exactly 0.

Visibilities: ``DATA = g_1 conj(g_2) V_sky + |g_1||g_2| n`` for live antennas,
``n`` complex Gaussian with ``noise_sigma_jy`` per part; a dead antenna
contributes noise only (unit noise scale). Autocorrelations carry
``|g|^2 (SEFD + sum of apparent fluxes)`` plus noise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg.errors import ContimgError

SCHEMA = "dsa110_contimg.simulation_truth"
VERSION = 1


def truth_path(ms_path: str | os.PathLike) -> Path:
    """Where the truth of ``ms_path`` lives."""
    ms_path = Path(ms_path)
    return ms_path.with_name(ms_path.name + ".truth.npz")


@dataclass(frozen=True, eq=False)
class SimulationTruth:
    meta: dict
    bandpass: np.ndarray
    phase_drift_rad: np.ndarray
    rfi_cells: np.ndarray
    zero_rows: np.ndarray

    @property
    def antenna_names(self) -> list[str]:
        return self.meta["antenna_names"]

    def gains(self, spw: int) -> np.ndarray:
        """Complex gain (ant, time, chan, corr) of one SPW."""
        return self.bandpass[:, None, spw] * np.exp(1j * self.phase_drift_rad)[:, :, None, :]

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a temporary file in the same directory, then rename."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            meta=np.array(json.dumps(self.meta)),
            bandpass=self.bandpass,
            phase_drift_rad=self.phase_drift_rad,
            rfi_cells=self.rfi_cells,
            zero_rows=self.zero_rows,
        )
        os.replace(tmp, path)


def load_truth(ms_or_truth_path: str | os.PathLike) -> SimulationTruth:
    """Read the truth of a synthetic MS (give the MS path or the truth file)."""
    path = Path(ms_or_truth_path)
    if not path.name.endswith(".truth.npz"):
        path = truth_path(path)
    if not path.exists():
        raise ContimgError(f"no simulation truth at {path}: was this MS made by contimg simulate?")
    with np.load(path) as archive:
        meta = json.loads(str(archive["meta"]))
        if meta.get("schema") != SCHEMA or meta.get("version") != VERSION:
            raise ContimgError(
                f"{path} is not a version {VERSION} {SCHEMA} file "
                f"(found {meta.get('schema')} v{meta.get('version')})"
            )
        return SimulationTruth(
            meta=meta,
            bandpass=archive["bandpass"],
            phase_drift_rad=archive["phase_drift_rad"],
            rfi_cells=archive["rfi_cells"],
            zero_rows=archive["zero_rows"],
        )
