"""Multi-MS assembly: per-SPW sub-MSs that CASA and dask-ms read as one MS.

Each sub-MS is written by one process only, so applies to different SPWs
run in parallel without two writers on one table; the Multi-MS is a
reference concatenation of them (CASA's own ``partition`` layout). The
layout is made here rather than by CASA's ``makeMMS`` helper, which splits
paths on spaces and deletes files through the shell: any legal path works
(spaces, unicode, symlinks) and no path reaches a shell.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dsa110_contimg.casa.tasks import create_multi_ms

# Subtables every sub-MS keeps its own copy of (CASA's layout).
_OWN_SUBTABLES = ("SOURCE", "HISTORY")


def assemble_mms(sub_ms_paths, output_mms, parallel_axis: str = "spw") -> str:
    """Move ``sub_ms_paths`` into ``output_mms/SUBMSS`` and make the Multi-MS.

    The sub-MSs must share their subtables (same FIELD, SPECTRAL_WINDOW, ...)
    and columns; their subtables become links to the first one's.
    """
    from casacore.tables import table

    output_mms = Path(output_mms).absolute()
    sub_ms_paths = [Path(p).absolute() for p in sub_ms_paths]
    if output_mms.exists():
        raise FileExistsError(f"{output_mms} already exists")
    if not sub_ms_paths:
        raise ValueError("no sub-MS to assemble")
    create_multi_ms(str(output_mms), [str(p) for p in sub_ms_paths])
    sub_dir = output_mms / "SUBMSS"
    members = [sub_dir / p.name for p in sub_ms_paths]
    for member in [output_mms, *members]:
        _drop_sorted_table(member)
    master = members[0]
    subtables = _subtable_names(master)
    for name in subtables:
        os.symlink(Path("SUBMSS") / master.name / name, output_mms / name)
    shared = [name for name in subtables if name not in _OWN_SUBTABLES]
    for member in members[1:]:
        for name in shared:
            own = member / name
            if own.is_symlink() or own.is_file():
                own.unlink()
            elif own.exists():
                shutil.rmtree(own)
            os.symlink(Path("..") / master.name / name, own)
    with table(str(output_mms), readonly=False, ack=False) as main:
        info = main.info()
        readme = "\n".join(
            line for line in info.get("readme", "").splitlines() if "AxisType" not in line
        )
        main.putinfo({**info, "readme": f"AxisType = {parallel_axis}\n{readme}".rstrip()})
    return os.fspath(output_mms)


def _drop_sorted_table(path: Path) -> None:
    """Remove the SORTED_TABLE keyword (and the sorted copy it names) of a table."""
    from casacore.tables import table

    with table(str(path), readonly=False, ack=False) as main:
        if "SORTED_TABLE" not in main.keywordnames():
            return
        sorted_copy = str(main.getkeyword("SORTED_TABLE")).removeprefix("Table: ")
        main.removekeyword("SORTED_TABLE")
    if sorted_copy and Path(sorted_copy).is_dir() and Path(sorted_copy).parent == path:
        shutil.rmtree(sorted_copy)


def _subtable_names(ms: Path) -> list[str]:
    """Names of the subtables an MS's keywords point to."""
    from casacore.tables import table

    with table(str(ms), ack=False) as main:
        keywords = main.getkeywords()
    return [
        Path(value.removeprefix("Table: ")).name
        for name, value in keywords.items()
        if isinstance(value, str) and value.startswith("Table: ") and name != "SORTED_TABLE"
    ]


def sub_ms_paths(mms) -> list[Path]:
    """The sub-MSs of a Multi-MS, in name order."""
    return sorted((Path(mms) / "SUBMSS").glob("*.ms"))


def join_as_spws(sub_ms_paths) -> None:
    """Make single-SPW MSs, alike in all else, the SPWs 0..n-1 of one Multi-MS (in order).

    Member ``k``'s rows get DATA_DESC_ID ``k``; the first member's
    SPECTRAL_WINDOW and DATA_DESCRIPTION (which :func:`assemble_mms` shares
    with every member) list all n, and its FEED rows apply to every SPW.
    """
    import numpy as np
    from casacore.tables import table

    paths = [str(p) for p in sub_ms_paths]
    master, n = paths[0], len(paths)
    with table(f"{master}/SPECTRAL_WINDOW", readonly=False, ack=False) as spw:
        if spw.nrows() != 1:
            raise ValueError(f"{master} has {spw.nrows()} SPWs; one each is joined")
        for other in paths[1:]:
            with table(f"{other}/SPECTRAL_WINDOW", ack=False) as theirs:
                theirs.copyrows(spw)
    with table(f"{master}/DATA_DESCRIPTION", readonly=False, ack=False) as dd:
        for _ in paths[1:]:
            dd.copyrows(dd, startrowin=0, nrow=1)
        dd.putcol("SPECTRAL_WINDOW_ID", np.arange(n, dtype=np.int32))
    with table(f"{master}/FEED", readonly=False, ack=False) as feed:
        feed.putcol("SPECTRAL_WINDOW_ID", np.full(feed.nrows(), -1, np.int32))
    for k, path in enumerate(paths):
        with table(path, readonly=False, ack=False) as main:
            main.putcol("DATA_DESC_ID", np.full(main.nrows(), k, np.int32))
