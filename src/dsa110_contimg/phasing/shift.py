"""Fields of an MS moved to a new phase centre as its rows are copied.

What CASA ``phaseshift`` writes, in one pass over the rows: each row of a shifted
field gets UVW rotated to the new centre and DATA times the phasor of the
change in w (:mod:`~dsa110_contimg.sky.predict_kernels`);
FIELD::PHASE_DIR takes the new direction, REFERENCE_DIR stays. Only for MSs
whose directions and UVW are fixed J2000 (``ms.reads.fixed_j2000_phase_centres``);
others go through CASA, which converts frames.
"""

from __future__ import annotations

import time

import numpy as np

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


def field_rotations(ms, fields, ra_rad: float, dec_rad: float) -> np.ndarray:
    """(field, 3, 3): for each field of ``ms``, the turn of its UVW to (ra, dec), or the
    identity where it stays (fields not in ``fields``)."""
    phase_dir = reads.read_subtable(ms, "FIELD", columns=["PHASE_DIR"]).PHASE_DIR.values[:, 0, :]
    rotations = np.repeat(np.eye(3)[None], len(phase_dir), axis=0)
    for f in fields:
        rotations[f] = uvw_rotation(phase_dir[f, 0], phase_dir[f, 1], ra_rad, dec_rad)
    return rotations


def copy_rephased(vis, outputvis, shifted_fields, ra_rad, dec_rad, spw: str, field: str,
                  also=None, read_columns=(), add_columns=()):  # fmt: skip
    """CASA ``phaseshift``'s product in one pass: the rows of ``spw`` (and of ``field``,
    comma-separated ids, or every field when empty) copied to ``outputvis`` with the
    UVW and DATA of ``shifted_fields`` rephased to (ra, dec) on the way.

    As ``mstransform`` with ``reindex=False``: ids unchanged, every subtable whole,
    DATA without MODEL_DATA and CORRECTED_DATA; FIELD::PHASE_DIR of the shifted
    fields set, REFERENCE_DIR kept. WEIGHT is copied as it is (CASA rewrites it from
    SIGMA, one float32 step away at most). Written under a hidden name, renamed
    into place once whole.

    ``also(block)``, when given, sees each block of rows once rephased (UVW,
    FIELD_ID, DATA_DESC_ID, DATA and ``read_columns``) and returns more columns
    to write, those of ``add_columns`` (new, stored as DATA) among them.
    """
    started = time.perf_counter()
    rotations = field_rotations(vis, shifted_fields, ra_rad, dec_rad)
    spw_of_ddid, freq_by_spw = reads.spw_of_ddid(vis), reads.chan_freq_hz(vis)
    freq_by_ddid = [freq_by_spw[int(s)] for s in spw_of_ddid]
    ddids = [d for d, s in enumerate(spw_of_ddid) if str(int(s)) in spw.split(",")]
    where = f"DATA_DESC_ID IN [{','.join(map(str, ddids))}]"
    if field:
        where += f" AND FIELD_ID IN [{field}]"

    def rephase(block):
        new_uvw, delay_m = rephased_rows(block["UVW"], block["FIELD_ID"], rotations)
        data = block["DATA"]
        moved = delay_m != 0  # rows of fields left where they are keep DATA as it is
        for ddid in np.unique(block["DATA_DESC_ID"][moved]):
            rows = np.flatnonzero(moved & (block["DATA_DESC_ID"] == ddid))
            data[rows] = times_delay_phasor(data[rows], delay_m[rows], freq_by_ddid[ddid])
        changed = {"UVW": new_uvw, "DATA": data}
        return {**changed, **also({**block, **changed})} if also else changed

    with publish_directory(outputvis) as partial:
        n_rows = writes.copy_selected_rows(str(vis), str(partial), where, rephase,
                                           read_columns=read_columns,
                                           add_columns=add_columns)  # fmt: skip
        writes.set_phase_dirs(str(partial), {f: (ra_rad, dec_rad) for f in shifted_fields})
    return {"task": "copied and rephased here", "rows": n_rows,
            "copy_seconds": time.perf_counter() - started}  # fmt: skip
