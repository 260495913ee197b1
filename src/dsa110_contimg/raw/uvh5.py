"""UVH5 files through pyuvdata: headers, drift-scan data phased to each integration's meridian.

Correlator files are unphased (drift scan: pyuvdata's ``unprojected``
phase centre, referenced to zenith) and store ``uvw_array`` as float32, so
UVWs are recomputed from the antenna positions (float64) before phasing,
and pyuvdata's strict checks are off for reading them. Every integration
becomes its own field ``meridian_icrs_t<i>``: RA the local mean sidereal
time at the integration's midpoint at the telescope's longitude (the
simulator's definition of the meridian), Dec the pointing declination
(``extra_keywords['phase_center_dec']`` in radians, else the zenith's).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dsa110_contimg.casa_env import offline_observatory_sites
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.sky.coordinates import local_sidereal_time

POINTING_DEC_KEY = "phase_center_dec"
JD_MJD = 2400000.5


def _uvdata():
    offline_observatory_sites()
    from pyuvdata import UVData

    return UVData


_READ_OPTIONS = {
    "run_check": False,
    "check_extra": False,
    "run_check_acceptability": False,
    "strict_uvw_antpos_check": False,
}


def _read(path, read_data: bool):
    uv = _uvdata()()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            uv.read(str(path), file_type="uvh5", read_data=read_data, **_READ_OPTIONS)
        except (OSError, KeyError, ValueError, TypeError) as err:
            reason = " ".join(str(err).split())[:200] or type(err).__name__
            raise ContimgError(
                f"{path} is not a readable UVH5 file (truncated or not HDF5: {reason})"
            ) from None
    return uv


@dataclass(frozen=True)
class SubbandHeader:
    """What planning needs from one file, without its data."""

    path: str
    n_chan: int
    n_spw: int
    freq_min_hz: float
    freq_max_hz: float
    times_jd: tuple[float, ...]
    n_pol: int
    drift: bool
    telescope: str
    pointing_dec_rad: float
    longitude_deg: float
    dish_diameter_m: float | None  # median of the file's antenna diameters, None if none

    @property
    def meridian_ras_rad(self) -> np.ndarray:
        """RA of the meridian at each integration: where the converted MS's fields point."""
        return np.atleast_1d(meridian_ra_rad(np.asarray(self.times_jd), self.longitude_deg))


def read_header(path) -> SubbandHeader:
    uv = _read(path, read_data=False)
    return SubbandHeader(
        path=str(path),
        n_chan=int(uv.Nfreqs),
        n_spw=int(uv.Nspws),
        freq_min_hz=float(np.min(uv.freq_array)),
        freq_max_hz=float(np.max(uv.freq_array)),
        times_jd=tuple(float(t) for t in np.unique(uv.time_array)),
        n_pol=int(uv.Npols),
        drift=all(c["cat_type"] == "unprojected" for c in uv.phase_center_catalog.values()),
        telescope=str(uv.telescope.name),
        pointing_dec_rad=pointing_dec_rad(uv),
        longitude_deg=float(uv.telescope.location.lon.deg),
        dish_diameter_m=_dish_diameter_m(uv),
    )


def _dish_diameter_m(uv) -> float | None:
    diameters = uv.telescope.antenna_diameters
    if diameters is None:
        return None
    diameters = np.asarray(diameters, float)
    diameters = diameters[np.isfinite(diameters) & (diameters > 0)]
    return float(np.median(diameters)) if len(diameters) else None


def pointing_dec_rad(uv) -> float:
    """The pointing declination: the file's ``phase_center_dec``, else the zenith's."""
    value = (uv.extra_keywords or {}).get(POINTING_DEC_KEY)
    if value is not None:
        return float(value)
    return float(uv.telescope.location.lat.rad)


def meridian_ra_rad(time_jd, longitude_deg: float):
    """RA of the meridian at ``time_jd``: local mean sidereal time, radians."""
    return local_sidereal_time((np.asarray(time_jd) - JD_MJD) * 86400.0, longitude_deg)


def field_name(index: int) -> str:
    return f"meridian_icrs_t{index}"


def read_phased_subband(path):
    """One subband file as a UVData with one field per integration at its meridian."""
    uv = _read(path, read_data=True)
    if not all(c["cat_type"] == "unprojected" for c in uv.phase_center_catalog.values()):
        raise ContimgError(
            f"{path} is phased (to {_phase_centre_names(uv)}), not a drift scan: convert "
            "takes the correlator's unphased files"
        )
    uv.uvw_array = uv.uvw_array.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.set_uvws_from_antenna_positions()
        dec = pointing_dec_rad(uv)
        longitude = float(uv.telescope.location.lon.deg)
        for i, time in enumerate(np.unique(uv.time_array)):
            uv.phase(
                lon=float(meridian_ra_rad(time, longitude)),
                lat=dec,
                epoch="J2000",
                phase_frame="fk5",
                cat_name=field_name(i),
                select_mask=uv.time_array == time,
            )
        # The drift scan's zenith entry is left unused; unremoved it would be a FIELD row.
        # pyuvdata has no public call for this.
        uv._clear_unused_phase_centers()
    return uv


def _phase_centre_names(uv) -> str:
    return ", ".join(sorted(str(c["cat_name"]) for c in uv.phase_center_catalog.values()))


def uvdata_from_ms(ms_path):
    """A Measurement Set as a UVData (pyuvdata's MS reader, checks off)."""
    uv = _uvdata()()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.read(str(ms_path), file_type="ms", run_check=False)
    return uv


def write_uvh5(uv, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.write_uvh5(str(path), clobber=False, run_check=False)


def store_uvw_float32(path) -> None:
    """Store ``uvw_array`` as float32, as the correlator does."""
    import h5py

    with h5py.File(str(path), "r+") as f:
        uvw = f["Header/uvw_array"][()]
        del f["Header/uvw_array"]
        f["Header"].create_dataset("uvw_array", data=uvw.astype(np.float32))


def drift_scan_copy(uv, location, pointing_dec: float):
    """``uv`` as the correlator writes it: unphased (zenith), the pointing Dec recorded.

    UVWs are recomputed from the antenna positions first (without touching
    the data), so a conversion that phases the files back with the same
    pyuvdata geometry returns the visibilities unchanged.
    """
    out = uv.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.telescope.location = location
        out.set_uvws_from_antenna_positions(update_vis=False)
        out.unproject_phase()
    out.extra_keywords = {**(out.extra_keywords or {}), POINTING_DEC_KEY: float(pointing_dec)}
    return out
