"""Create the Measurement Set structure with the casatools simulator.

The simulator writes the subtables, rows, TIME and UVW (computed by CASA for
each field's own phase centre); the visibilities are filled afterwards with
numpy so the corruptions are known exactly.
"""

from __future__ import annotations

from dsa110_contimg.casa.simulator import simulate_rows
from dsa110_contimg.ms.writes import finish_simulated_main_table, list_every_station
from dsa110_contimg.simulate.plan import ObservationPlan


def build_ms_skeleton(ms_path: str, plan: ObservationPlan, autocorrelations: bool) -> None:
    """Write an MS with every row of ``plan`` and zero DATA.

    SCAN_NUMBER is one per integration (field). MODEL_DATA and
    CORRECTED_DATA, which the simulator adds, are removed: a raw DSA-110 MS
    has DATA only. The ANTENNA table lists every station.
    """
    simulate_rows(ms_path, plan, autocorrelations)
    finish_simulated_main_table(ms_path, plan.time_mjd_s)
    list_every_station(ms_path, plan.station_index, plan.station_names, plan.station_itrf_m)
