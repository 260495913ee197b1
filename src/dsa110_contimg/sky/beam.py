"""Primary beam of a uniformly illuminated dish (Airy pattern)."""

from __future__ import annotations

import numpy as np
from scipy.special import j1

from dsa110_contimg.instrument import DISH_DIAMETER_M, SPEED_OF_LIGHT_M_S


def airy_power_response(offset_rad, freq_hz, dish_diameter_m=DISH_DIAMETER_M):
    """Power response (1 on axis) at ``offset_rad`` from the pointing.

    ``offset_rad`` and ``freq_hz`` broadcast together. For a baseline of two
    identical dishes this is also the attenuation of the visibility.
    """
    x = np.pi * dish_diameter_m * np.sin(offset_rad) * np.asarray(freq_hz) / SPEED_OF_LIGHT_M_S
    x = np.asarray(x, dtype=float)
    safe = np.where(np.abs(x) < 1e-8, 1.0, x)
    amplitude = np.where(np.abs(x) < 1e-8, 1.0, 2.0 * j1(safe) / safe)
    return amplitude**2


def airy_fwhm_rad(freq_hz, dish_diameter_m=DISH_DIAMETER_M):
    """Full width at half power of the Airy power pattern: 1.029 lambda / D."""
    return 1.02899 * SPEED_OF_LIGHT_M_S / (np.asarray(freq_hz) * dish_diameter_m)
