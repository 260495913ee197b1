"""The native engine's flagging of autocorrelations and zeros, through dask-ms.

What ``flagdata`` writes for the recipe's two default modes: ``manual`` with
``autocorr=True`` flags every visibility of an autocorrelation row and sets its
FLAG_ROW; ``clip`` with ``clipzeros=True`` flags each (channel, correlation)
whose DATA is exactly 0 and, as every clip does, any that is NaN or infinite,
leaving FLAG_ROW alone. Flags are only ever added. Other modes (``tfcrop``,
``rflag``) are CASA's.
"""

from __future__ import annotations

import time

import numpy as np
from daskms import xds_to_table

from dsa110_contimg.ms import reads

NATIVE_MODES = frozenset({"autocorr", "zeros"})


def added_flags(data, flag, flag_row, antenna1, antenna2, modes):
    """(FLAG, FLAG_ROW) of rows with the flags of ``modes`` added; numpy or dask arrays."""
    if "autocorr" in modes:
        auto = antenna1 == antenna2
        flag = flag | auto[:, None, None]
        flag_row = flag_row | auto
    if "zeros" in modes:
        flag = flag | (data == 0) | ~np.isfinite(data)
    return flag, flag_row


def flag_autocorrelations_and_zeros(vis: str, modes) -> dict:
    """Add the flags of ``modes`` (a subset of :data:`NATIVE_MODES`) to ``vis`` in place."""
    started = time.perf_counter()
    modes = set(modes)
    if not modes <= NATIVE_MODES:
        raise ValueError(f"modes {sorted(modes - NATIVE_MODES)} are CASA's")
    columns = ["DATA", "FLAG", "FLAG_ROW", "ANTENNA1", "ANTENNA2"]
    datasets = reads.read_visibility_datasets(vis, columns, group_cols=["DATA_DESC_ID"])
    written = []
    for ds in datasets:
        flag, flag_row = added_flags(ds.DATA.data, ds.FLAG.data, ds.FLAG_ROW.data,
                                     ds.ANTENNA1.data, ds.ANTENNA2.data, modes)  # fmt: skip
        written.append(
            ds.drop_vars(list(ds.data_vars)).assign(  # ROWID stays: rows are rewritten
                FLAG=(("row", "chan", "corr"), flag), FLAG_ROW=(("row",), flag_row)
            )
        )
    reads.compute_reading(xds_to_table(written, str(vis), columns=["FLAG", "FLAG_ROW"]))
    return {"engine": "native", "flag_seconds": time.perf_counter() - started,
            "modes": sorted(modes)}  # fmt: skip
