"""Table writes outside CASA tasks: whole-column rewrites of MSs this system made.

Every write here goes to an MS the system created (a simulation, a working
copy, a sub-MS of its own Multi-MS), never to an input MS.
"""

from __future__ import annotations

import numpy as np
from casacore.tables import table


def rewrite_row_groups(ms_path: str, read_columns, fill) -> int:
    """Rewrite the MS group by group of consecutive rows sharing FIELD_ID and DATA_DESC_ID.

    ``fill(field_id, spw, columns)`` gets the group's ``read_columns`` and
    returns {column: values} to write over the group. Returns the rows.
    """
    with table(ms_path, readonly=False, ack=False) as main:
        n_rows = main.nrows()
        field = main.getcol("FIELD_ID")
        ddid = main.getcol("DATA_DESC_ID")
        with table(f"{ms_path}/DATA_DESCRIPTION", ack=False) as dd:
            ddid_spw = dd.getcol("SPECTRAL_WINDOW_ID")
        starts = np.flatnonzero(np.r_[True, (np.diff(field) != 0) | (np.diff(ddid) != 0)])
        stops = np.r_[starts[1:], n_rows]
        for start, stop in zip(starts, stops, strict=True):
            nrow = int(stop - start)
            columns = {c: main.getcol(c, int(start), nrow) for c in read_columns}
            written = fill(int(field[start]), int(ddid_spw[ddid[start]]), columns)
            for name, values in written.items():
                main.putcol(name, values, int(start), nrow)
    return n_rows


def write_uvdata_ms(uv, ms_path) -> None:
    """A pyuvdata UVData written as a Measurement Set (pyuvdata's writer, checks off)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.write_ms(str(ms_path), clobber=False, run_check=False)


def flag_all_rows(ms_path) -> None:
    """FLAG and FLAG_ROW set on every row (a sub-MS whose calibration failed)."""
    with table(str(ms_path), readonly=False, ack=False) as main:
        main.putcol("FLAG_ROW", np.ones(main.nrows(), dtype=bool))
        flags = main.getcol("FLAG")
        main.putcol("FLAG", np.ones_like(flags))


def list_every_station(ms_path: str, row_of, station_names, station_itrf_m) -> None:
    """Rewrite the ANTENNA table as the real converter writes it: every station.

    The simulator knows only the antennas with data; their rows move to their
    stations' places (``row_of[i]`` for the simulator's antenna ``i``), the
    other stations get rows of their own (position, dish, mount) and no data,
    and every antenna id (main table, FEED, POINTING) follows.
    """
    row_of = np.asarray(row_of)
    n_stations = len(station_names)
    with table(f"{ms_path}/ANTENNA", readonly=False, ack=False) as antenna:
        columns = {c: antenna.getcol(c) for c in antenna.colnames()}
        antenna.addrows(n_stations - antenna.nrows())
        for name, values in columns.items():
            full = np.repeat(values[:1], n_stations, axis=0)
            full[row_of] = values
            if name == "POSITION":
                full = np.asarray(station_itrf_m)
            elif name in ("NAME", "STATION"):
                full = np.array(station_names)
            elif name == "OFFSET":
                full = np.zeros_like(full)
            antenna.putcol(name, full)
    with table(ms_path, readonly=False, ack=False) as main:
        for column in ("ANTENNA1", "ANTENNA2"):
            main.putcol(column, row_of[main.getcol(column)].astype(np.int32))
    with table(f"{ms_path}/POINTING", readonly=False, ack=False) as pointing:
        if pointing.nrows():
            pointing.putcol("ANTENNA_ID", row_of[pointing.getcol("ANTENNA_ID")].astype(np.int32))
    with table(f"{ms_path}/FEED", readonly=False, ack=False) as feed:
        ids = row_of[feed.getcol("ANTENNA_ID")]
        first = feed.nrows()
        missing = sorted(set(range(n_stations)) - set(ids.tolist()))
        for _ in missing:
            feed.copyrows(feed, startrowin=0, startrowout=-1, nrow=1)
        feed.putcol("ANTENNA_ID", np.r_[ids, missing].astype(np.int32), 0, first + len(missing))


def finish_simulated_main_table(ms_path: str, time_of_field_mjd_s) -> None:
    """A simulator's MS as a raw one: DATA only, a scan per field, J2000 UVW, DATA in Jy.

    Refuses (RuntimeError) rows whose TIME is not their field's integration
    in ``time_of_field_mjd_s`` (MJD seconds per field).
    """
    with table(ms_path, readonly=False, ack=False) as main:
        main.removecols([c for c in ("MODEL_DATA", "CORRECTED_DATA") if c in main.colnames()])
        field_id = main.getcol("FIELD_ID")
        main.putcol("SCAN_NUMBER", (field_id + 1).astype(np.int32))
        # UVW are computed by the simulator in the J2000 frame of each phase centre.
        keywords = main.getcolkeywords("UVW")
        keywords["MEASINFO"]["Ref"] = "J2000"
        main.putcolkeywords("UVW", keywords)
        # The simulated sky, gains near unity and noise are in Jy.
        main.putcolkeyword("DATA", "QuantumUnits", ["Jy"])
        times = main.getcol("TIME")
        expected = np.asarray(time_of_field_mjd_s)[field_id]
        worst = float(np.max(np.abs(times - expected)))
        if worst > 1e-3:
            raise RuntimeError(
                f"simulator wrote TIME {worst:.3f} s away from the plan "
                f"(first integration at MJD {time_of_field_mjd_s[0] / 86400:.6f} d)"
            )


def set_phase_dirs(ms_path: str, phase_dir_rad_by_field: dict) -> None:
    """FIELD::PHASE_DIR of each field in ``{field_id: (ra, dec)}`` set to that direction."""
    with table(f"{ms_path}/FIELD", readonly=False, ack=False) as field:
        phase_dir = field.getcol("PHASE_DIR")
        for field_id, (ra, dec) in phase_dir_rad_by_field.items():
            phase_dir[int(field_id), 0, :] = (ra, dec)
        field.putcol("PHASE_DIR", phase_dir)


_REWRITE_COLUMNS = ("UVW", "FIELD_ID", "DATA_DESC_ID", "DATA")
# subtables that are views of the main table itself (old CASA's sorted copy): not copied
_MAIN_TABLE_VIEWS = {"SORTED_TABLE"}


def copy_selected_rows(vis: str, outputvis: str, where: str, rewrite=None,
                       leave_out=("MODEL_DATA", "CORRECTED_DATA"), read_columns=(),
                       add_columns=(), block_bytes: int = 16 << 20) -> int:  # fmt: skip
    """A new MS at ``outputvis``: the rows of ``vis`` matching TaQL ``where``, every
    subtable whole, ids unchanged (what ``mstransform`` with ``reindex=False`` and
    ``datacolumn='data'`` makes), the columns ``leave_out`` left out.

    Rows go over in blocks of about ``block_bytes`` of DATA, column by column.
    ``rewrite(block)`` may change a block on the way: it gets {column: values}
    of UVW, FIELD_ID, DATA_DESC_ID, DATA and ``read_columns`` and returns the
    columns it changed, and those of ``add_columns``: new columns shaped and
    stored as DATA (e.g. MODEL_DATA), which it must return for every block. The
    input is only read. Returns the number of rows copied.
    """
    import shutil
    from pathlib import Path

    with table(vis, ack=False) as main, main.query(where) as selected:
        n_rows = selected.nrows()
        main.copy(outputvis, deep=True, valuecopy=True, copynorows=True)
        subtables = {name: value[len("Table: "):] for name, value in main.getkeywords().items()
                     if isinstance(value, str) and value.startswith("Table: ")}  # fmt: skip
        for name, path in subtables.items():
            # a copy without rows leaves the subtables empty: their files copied whole
            # instead (as cp -r copies an MS; a tenth of casacore's deep copy's time)
            shutil.rmtree(Path(outputvis) / name, ignore_errors=True)
            if name not in _MAIN_TABLE_VIEWS:
                shutil.copytree(path, Path(outputvis) / name)
        with table(outputvis, readonly=False, ack=False) as out:
            for name in _MAIN_TABLE_VIEWS & set(out.getkeywords()):
                out.removekeyword(name)
            out.removecols([c for c in [*leave_out, *add_columns] if c in out.colnames()])
            cell_shape = selected.getcell("DATA", 0).shape if n_rows else (1, 1)
            for name in add_columns:
                _add_column_like_data(out, name, cell_shape)
            out.addrows(n_rows)
            columns = [
                c for c in out.colnames()
                if n_rows and (c in add_columns or selected.iscelldefined(c, 0))
            ]  # fmt: skip
            # a column the rewrite changes from row to row (FLAG_ROW of autocorrelations)
            # inserts slowly, block after block, into an IncrementalStMan that other such
            # columns (UVW of some simulated MSs) fill in the same table session: seconds
            # instead of milliseconds. Written whole once the rest is stored.
            later = {c: [] for c in read_columns
                     if c in columns and c not in _REWRITE_COLUMNS
                     and out.getdminfo(c)["TYPE"] == "IncrementalStMan"}  # fmt: skip
            data_row_bytes = max(1, selected.getcell("DATA", 0).nbytes) if n_rows else 1
            step = max(1, block_bytes // data_row_bytes)
            for start in range(0, n_rows, step):
                count = min(step, n_rows - start)
                block = {c: selected.getcol(c, start, count)
                         for c in dict.fromkeys([*_REWRITE_COLUMNS, *read_columns])}  # fmt: skip
                block.update(rewrite(block) if rewrite else {})
                for column in columns:
                    values = block.get(column)
                    if values is None:
                        values = selected.getcol(column, start, count)
                    if column in later:
                        later[column].append(values)
                    else:
                        out.putcol(column, values, start, count)
    if later:
        with table(outputvis, readonly=False, ack=False) as out:
            for column, parts in later.items():
                out.putcol(column, np.concatenate(parts))
    return n_rows


def _add_column_like_data(out, name: str, cell_shape) -> None:
    """A column ``name`` (of a table without rows) described as DATA, its cells
    ``cell_shape`` (chan, corr) tiled by about 1 MiB in a storage manager of its own."""
    from casacore.tables import makecoldesc

    description = out.getcoldesc("DATA")
    description.pop("dataManagerGroup", None)
    description["comment"] = f"The {name} column"
    n_chan, n_corr = cell_shape
    tile_shape = [n_corr, n_chan, max(1, (1 << 20) // (8 * n_chan * n_corr))]
    manager = {"TYPE": "TiledShapeStMan", "NAME": f"{name}_hypercolumn",
               "SPEC": {"DEFAULTTILESHAPE": np.asarray(tile_shape, dtype=np.int32)}}  # fmt: skip
    out.addcols(makecoldesc(name, description), manager)
