"""A simulated observation written as the correlator's UVH5 subband files.

The observation is simulated as a Measurement Set (the same sky, gains and
noise as ``simulate``), read with pyuvdata, unphased (drift scan,
referenced to zenith) and split into one file per SPW named
``<first time stamp>_sbNN.hdf5``, sb00 holding the highest frequencies
(DSA-110 SPW 15), ``uvw_array`` in float32, every station in the antenna
table, the pointing Dec in ``extra_keywords['phase_center_dec']``. The
truth file sits beside them as ``<time stamp>.truth.npz``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110_contimg import instrument
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.publish import publish_directory
from dsa110_contimg.raw import uvh5
from dsa110_contimg.simulate.config import SimulationConfig
from dsa110_contimg.simulate.observation import simulate_observation
from dsa110_contimg.simulate.plan import mjd_seconds_to_iso, plan_observation


@dataclass(frozen=True)
class SubbandFilesResult:
    directory: Path
    files: tuple[Path, ...]
    truth_path: Path
    stamp: str
    seconds: float


def subband_index(spw: int) -> int:
    """The correlator's subband number of DSA-110 SPW ``spw`` (sb00 is SPW 15)."""
    return instrument.N_SPW - 1 - spw


def first_stamp(config: SimulationConfig) -> str:
    """The observation's time stamp: the start of its first integration, to the second."""
    plan = plan_observation(config)
    start = plan.time_mjd_s[0] - plan.integration_s / 2
    return mjd_seconds_to_iso(start)[:19]


def simulate_subband_files(out_dir, config: SimulationConfig, overwrite: bool = False):
    """Write the subband files of ``config``'s observation into directory ``out_dir``."""
    from astropy import units as u
    from astropy.coordinates import EarthLocation

    started = time.perf_counter()
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not overwrite:
        raise ContimgError(f"{out_dir} already exists; pass --overwrite to replace it")
    if not out_dir.parent.is_dir():
        raise ContimgError(f"{out_dir.parent} does not exist")
    stamp = first_stamp(config)
    site = EarthLocation.from_geodetic(
        instrument.SITE_LONGITUDE_DEG * u.deg,
        instrument.SITE_LATITUDE_DEG * u.deg,
        instrument.SITE_HEIGHT_M * u.m,
    )
    with publish_directory(out_dir) as partial:
        partial.mkdir()
        with tempfile.TemporaryDirectory(dir=partial) as work:
            simulated = simulate_observation(Path(work) / "observation.ms", config)
            uv = uvh5.uvdata_from_ms(simulated.ms_path)
            drift = uvh5.drift_scan_copy(uv, site, np.radians(config.pointing_dec_deg))
            files = []
            for spw in range(config.n_spw):
                one = drift.select(spws=[spw], inplace=False, run_check=False)
                path = partial / f"{stamp}_sb{subband_index(spw):02d}.hdf5"
                uvh5.write_uvh5(one, path)
                uvh5.store_uvw_float32(path)
                files.append(out_dir / path.name)
            shutil.copyfile(simulated.truth_path, partial / f"{stamp}.truth.npz")
    return SubbandFilesResult(
        out_dir, tuple(sorted(files)), out_dir / f"{stamp}.truth.npz", stamp,
        time.perf_counter() - started,
    )  # fmt: skip
