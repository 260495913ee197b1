"""Pure coordinate kernels: direction cosines, separations, sidereal time.

Angles are radians unless a name ends in ``_deg``. Times are MJD seconds (UTC),
as in the Measurement Set ``TIME`` column.
"""

from __future__ import annotations

import numpy as np

SECONDS_PER_DAY = 86_400.0
MJD_J2000 = 51_544.5
TT_MINUS_UTC_S = 69.184  # 32.184 s + 37 leap seconds, valid since 2017


def direction_cosines(ra, dec, ra0, dec0):
    """(l, m, n) of directions (ra, dec) relative to phase centres (ra0, dec0).

    All inputs broadcast together; returns three arrays of the broadcast shape.
    """
    dra = ra - ra0
    cos_dec = np.cos(dec)
    l = cos_dec * np.sin(dra)
    m = np.sin(dec) * np.cos(dec0) - cos_dec * np.sin(dec0) * np.cos(dra)
    n = np.sqrt(np.clip(1.0 - l * l - m * m, 0.0, None))
    return l, m, n


def uvw_frame(ra, dec) -> np.ndarray:
    """(3, 3) rows: the u, v and w axes of phase centre (ra, dec) in the frame's xyz."""
    sin_ra, cos_ra, sin_dec, cos_dec = np.sin(ra), np.cos(ra), np.sin(dec), np.cos(dec)
    return np.array(
        [
            [-sin_ra, cos_ra, 0.0],
            [-sin_dec * cos_ra, -sin_dec * sin_ra, cos_dec],
            [cos_dec * cos_ra, cos_dec * sin_ra, sin_dec],
        ]
    )


def uvw_rotation(ra_from, dec_from, ra_to, dec_to) -> np.ndarray:
    """(3, 3) matrix taking UVW toward one phase centre to UVW toward another."""
    return uvw_frame(ra_to, dec_to) @ uvw_frame(ra_from, dec_from).T


def angular_separation(ra1, dec1, ra2, dec2):
    """Great-circle separation (Vincenty formula, stable at all angles), radians."""
    dra = ra2 - ra1
    sin_dra, cos_dra = np.sin(dra), np.cos(dra)
    sin1, cos1 = np.sin(dec1), np.cos(dec1)
    sin2, cos2 = np.sin(dec2), np.cos(dec2)
    num1 = cos2 * sin_dra
    num2 = cos1 * sin2 - sin1 * cos2 * cos_dra
    denom = sin1 * sin2 + cos1 * cos2 * cos_dra
    return np.arctan2(np.hypot(num1, num2), denom)


def greenwich_mean_sidereal_time(time_mjd_s):
    """GMST (IAU 2006, UT1 taken as UTC) in radians in [0, 2 pi).

    Ignoring UT1-UTC (< 0.9 s) shifts the result by at most 14 arcsec.
    """
    time_mjd_s = np.asarray(time_mjd_s, dtype=float)
    du = time_mjd_s / SECONDS_PER_DAY - MJD_J2000
    era = 2.0 * np.pi * np.mod(0.7790572732640 + 1.00273781191135448 * du, 1.0)
    t = (du + TT_MINUS_UTC_S / SECONDS_PER_DAY) / 36_525.0
    poly_arcsec = (
        0.014506 + 4612.156534 * t + 1.3915817 * t**2 - 0.00000044 * t**3 - 0.000029956 * t**4
    )
    return np.mod(era + np.radians(poly_arcsec / 3600.0), 2.0 * np.pi)


def local_sidereal_time(time_mjd_s, longitude_deg):
    """Local mean sidereal time (radians, [0, 2 pi)) at an east longitude."""
    gmst = greenwich_mean_sidereal_time(time_mjd_s)
    return np.mod(gmst + np.radians(longitude_deg), 2.0 * np.pi)


def geodetic_to_itrf(lat_deg, lon_deg, height_m):
    """WGS84 geodetic position to ITRF X, Y, Z in metres."""
    a = 6_378_137.0
    f = 1.0 / 298.257223563
    e2 = f * (2.0 - f)
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    n = a / np.sqrt(1.0 - e2 * np.sin(lat) ** 2)
    x = (n + height_m) * np.cos(lat) * np.cos(lon)
    y = (n + height_m) * np.cos(lat) * np.sin(lon)
    z = (n * (1.0 - e2) + height_m) * np.sin(lat)
    return np.array([x, y, z])


def enu_to_itrf(enu_m, lat_deg, lon_deg, height_m):
    """Local east/north/up offsets (ant, 3) about a site to ITRF positions (ant, 3)."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    rotation = np.stack([east, north, up])
    return geodetic_to_itrf(lat_deg, lon_deg, height_m) + np.asarray(enu_m) @ rotation
