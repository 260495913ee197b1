"""One SPW's solutions of a CASA table, read as CASA's interpolation reads them.

Shared by the native solves (the earlier tables applied on the fly) and the
native apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_contimg.calibration import delay_kernels
from dsa110_contimg.calibration import solver_kernels as kernels
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms import caltables


@dataclass(frozen=True, eq=False)
class TableGains:
    """One SPW's solutions of a CASA table, ready to interpolate to the data's times.

    A delay (``K``) table holds delays in ns (``values`` real) applied about
    ``delay_ref_freq_hz`` (its SPW's frequency in the table) at the data's
    ``chan_freq_hz``: CASA's K Jones, exp(2 pi i tau (f - f_ref)).
    """

    times: np.ndarray
    values: np.ndarray  # (time, ant, chan, pol)
    ok: np.ndarray
    interp: str
    delay_ref_freq_hz: float | None = None
    chan_freq_hz: np.ndarray | None = None

    @classmethod
    def from_table(cls, path, interp, spwmap, spw: int, n_ant: int,
                   chan_freq_hz) -> TableGains:  # fmt: skip
        """``chan_freq_hz``: the data's channels (a delay table's phases are made there)."""
        by_spw = caltables.read_solutions_by_spw(path)
        source = spwmap[spw] if spwmap and spw < len(spwmap) else spw
        if source not in by_spw:
            raise ContimgError(f"caltable {path} has no solutions for SPW {source}")
        part = by_spw[source]
        delays = np.isrealobj(part.values)
        times = np.unique(part.time)
        n_chan, n_pol = part.values.shape[1:]
        values = np.zeros((len(times), n_ant, n_chan, n_pol),
                          np.float64 if delays else np.complex128)  # fmt: skip
        ok = np.zeros(values.shape, bool)
        index = np.searchsorted(times, part.time)
        values[index, part.antenna] = part.values
        ok[index, part.antenna] = ~part.flag
        if not delays:
            return cls(times, values, ok, str(interp or "linear"))
        table_freq = caltables.caltable_chan_freq_hz(path)[source]
        return cls(times, values, ok, str(interp or "linear"),
                   delay_ref_freq_hz=float(table_freq[len(table_freq) // 2]),
                   chan_freq_hz=np.asarray(chan_freq_hz, float))  # fmt: skip

    def at(self, times, n_pol, n_chan) -> np.ndarray:
        """(time, ant, chan, pol) gains at ``times``; 0 where flagged (the data then are)."""
        mode = "nearest" if self.interp.split(",")[0] == "nearest" else "linear"
        if self.delay_ref_freq_hz is not None:
            # delays interpolate as numbers (CASA's FPARAM), then become phases per channel
            delays, ok = kernels.interpolate_real_in_time(
                self.times, self.values[:, :, 0], self.ok[:, :, 0], times, mode
            )
            phasors = delay_kernels.delay_phasors(delays, self.chan_freq_hz,
                                                  self.delay_ref_freq_hz)  # fmt: skip
            gains = np.where(ok[:, :, None, :], phasors, 0)
        else:
            values, ok = kernels.interpolate_in_time(self.times, self.values, self.ok, times, mode)
            values, ok = kernels.fill_flagged_channels(values, ok)
            gains = np.where(ok, values, 0)
        if gains.shape[2] == 1:
            gains = np.broadcast_to(gains, (*gains.shape[:2], n_chan, gains.shape[3]))
        if gains.shape[2] != n_chan or gains.shape[3] < n_pol:
            raise ContimgError("an earlier table's channels or polarisations do not match "
                               "the data: the native engine cannot apply it")  # fmt: skip
        return gains[..., :n_pol]
