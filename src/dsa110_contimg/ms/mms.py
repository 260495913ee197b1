"""Multi-MS assembly: per-SPW sub-MSs that CASA and dask-ms read as one MS.

Each sub-MS is written by one process only, so applies to different SPWs
run in parallel without two writers on one table; the Multi-MS is a
reference concatenation of them (CASA's own ``partition`` layout).
"""

from __future__ import annotations

import os
from pathlib import Path

from dsa110_contimg import casa_env


def assemble_mms(sub_ms_paths, output_mms) -> str:
    """Move ``sub_ms_paths`` into ``output_mms/SUBMSS`` and make the Multi-MS.

    The sub-MSs must share their subtables (same FIELD, SPECTRAL_WINDOW, ...)
    and columns; their subtables become links to the first one's.
    """
    casa_env.casatasks()
    from casatasks.private.partitionhelper import makeMMS

    output_mms = Path(output_mms).absolute()
    with casa_env.casa_output_to_log():
        makeMMS(
            str(output_mms),
            [str(Path(p).absolute()) for p in sub_ms_paths],
            parallelaxis="spw",
        )
    return os.fspath(output_mms)


def sub_ms_paths(mms) -> list[Path]:
    """The sub-MSs of a Multi-MS, in name order."""
    return sorted((Path(mms) / "SUBMSS").glob("*.ms"))
