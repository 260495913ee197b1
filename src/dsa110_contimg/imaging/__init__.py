"""Imaging DATA and CORRECTED_DATA with CASA tclean on Dask, and what calibration bought."""
