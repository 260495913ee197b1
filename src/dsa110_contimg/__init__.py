"""Calibration and quality assessment of DSA-110 Measurement Sets on Dask."""

from dsa110_contimg.casa_env import configure_astropy, configure_casa

configure_casa()
configure_astropy()

__version__ = "0.1.0"
