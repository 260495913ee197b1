"""Fields of an MS this system made moved to a new phase centre, in place, through dask-ms.

What CASA ``phaseshift`` writes, without its copy: each row of a shifted
field gets UVW rotated to the new centre and DATA times the phasor of the
change in w (:mod:`~dsa110_contimg.sky.predict_kernels`);
FIELD::PHASE_DIR takes the new direction, REFERENCE_DIR stays. Only for MSs
whose directions and UVW are fixed J2000 (``ms.reads.fixed_j2000_phase_centres``);
others go through CASA, which converts frames.
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np
from daskms import xds_to_table

from dsa110_contimg.casa import tasks
from dsa110_contimg.ms import reads, writes
from dsa110_contimg.ms.publish import publish_directory
from dsa110_contimg.sky.coordinates import uvw_rotation
from dsa110_contimg.sky.predict_kernels import rephased_uvw_and_delay, times_delay_phasor


def rephased_rows(uvw, field_id, rotations):
    """New UVW and changes in w of rows of any fields, each turned by its field's rotation.

    ``rotations`` is (field, 3, 3); a field left where it is has the identity,
    whose rows keep their UVW and get a delay of exactly 0.
    """
    new_uvw = np.array(uvw, dtype=float)
    delay_m = np.zeros(len(uvw))
    for f in np.unique(field_id):
        if np.array_equal(rotations[f], np.eye(3)):
            continue
        rows = np.flatnonzero(field_id == f)
        new_uvw[rows], delay_m[rows] = rephased_uvw_and_delay(uvw[rows], rotations[f])
    return new_uvw, delay_m


def _uvw_block(uvw, field_id, rotations):
    return rephased_rows(uvw, field_id, rotations)[0]


def _data_block(uvw, field_id, data, rotations, freq_hz):
    return times_delay_phasor(data, rephased_rows(uvw, field_id, rotations)[1], freq_hz)


def shift_fields_in_place(ms, fields, ra_rad: float, dec_rad: float) -> int:
    """Rephase ``fields`` of ``ms`` (a copy this system owns) to (ra, dec); rows rewritten."""
    phase_dir = reads.read_subtable(ms, "FIELD", columns=["PHASE_DIR"]).PHASE_DIR.values[:, 0, :]
    rotations = np.repeat(np.eye(3)[None], len(phase_dir), axis=0)
    for f in fields:
        rotations[f] = uvw_rotation(phase_dir[f, 0], phase_dir[f, 1], ra_rad, dec_rad)
    freq_by_spw = reads.chan_freq_hz(ms)
    ddid_spw = reads.spw_of_ddid(ms)
    written, n_rows = [], 0
    datasets = reads.read_visibility_datasets(
        ms, ["UVW", "FIELD_ID", "DATA"], group_cols=["DATA_DESC_ID"]
    )
    for ds in datasets:
        freq = freq_by_spw[int(ddid_spw[ds.attrs["DATA_DESC_ID"]])]
        uvw, field_id, data = ds.UVW.data, ds.FIELD_ID.data, ds.DATA.data
        new_uvw = da.blockwise(
            _uvw_block, "rx", uvw, "rx", field_id, "r",
            concatenate=True, dtype=uvw.dtype, rotations=rotations,
        )  # fmt: skip
        new_data = da.blockwise(
            _data_block, "rfc", uvw, "rx", field_id, "r", data, "rfc",
            concatenate=True, dtype=data.dtype, rotations=rotations, freq_hz=freq,
        )  # fmt: skip
        n_rows += ds.sizes["row"]
        written.append(
            ds.drop_vars(list(ds.data_vars)).assign(
                UVW=(("row", "uvw"), new_uvw), DATA=(("row", "chan", "corr"), new_data)
            )
        )
    reads.compute_reading(xds_to_table(written, str(ms), columns=["UVW", "DATA"]))
    writes.set_phase_dirs(str(ms), {f: (ra_rad, dec_rad) for f in fields})
    return n_rows


def copy_rephased(vis, outputvis, shifted_fields, ra_rad, dec_rad, spw, field, log_file) -> dict:
    """CASA ``phaseshift``'s product made as a copy (``split``) then shifted in place.

    The copy is shifted under a hidden name and renamed into place once whole.
    """
    with publish_directory(outputvis) as partial:
        call = tasks.run_split(vis, str(partial), spw=spw, field=field, log_file=log_file)
        started = time.perf_counter()
        shift_fields_in_place(str(partial), shifted_fields, ra_rad, dec_rad)
    return {"task": "split, shifted here", "casa_seconds": call.seconds,
            "shift_seconds": time.perf_counter() - started}  # fmt: skip
