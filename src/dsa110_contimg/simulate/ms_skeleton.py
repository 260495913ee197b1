"""Create the Measurement Set structure with the casatools simulator.

The simulator writes the subtables, rows, TIME and UVW (computed by CASA for
each field's own phase centre); the visibilities are filled afterwards with
numpy so the corruptions are known exactly.
"""

from __future__ import annotations

import numpy as np
from casacore.tables import table

from dsa110_contimg import casa_env, instrument
from dsa110_contimg.simulate.plan import ObservationPlan, mjd_seconds_to_iso

TIME_TOLERANCE_S = 1e-3


def build_ms_skeleton(ms_path: str, plan: ObservationPlan, autocorrelations: bool) -> None:
    """Write an MS with every row of ``plan`` and zero DATA.

    Rows come out grouped by (integration, SPW), baselines in order within
    each group. SCAN_NUMBER is one per integration (field). MODEL_DATA and
    CORRECTED_DATA, which the simulator adds, are removed: a raw DSA-110 MS
    has DATA only.
    """
    tools = casa_env.casatools()
    measures = tools.measures()
    # The simulator labels UTC the epoch it treats as TAI, so hand it the
    # start shifted by TAI-UTC; the check below proves the rows land right.
    start_utc = plan.time_mjd_s[0] - plan.integration_s / 2
    epoch = measures.epoch("UTC", f"{start_utc}s")
    tai = measures.measure(epoch, "TAI")
    tai_minus_utc = (tai["m0"]["value"] - epoch["m0"]["value"]) * 86_400.0
    reference = measures.epoch("UTC", f"{start_utc - tai_minus_utc}s")

    n_ant = len(plan.antenna_names)
    sim = tools.simulator()
    with casa_env.casa_output_to_log():
        sim.open(ms_path)
        sim.setconfig(
            telescopename=instrument.TELESCOPE_NAME,
            x=plan.antenna_itrf_m[:, 0].tolist(),
            y=plan.antenna_itrf_m[:, 1].tolist(),
            z=plan.antenna_itrf_m[:, 2].tolist(),
            dishdiameter=[instrument.DISH_DIAMETER_M] * n_ant,
            mount=["alt-az"] * n_ant,
            antname=list(plan.antenna_names),
            padname=list(plan.antenna_names),
            coordsystem="global",
            referencelocation=measures.observatory(instrument.TELESCOPE_NAME),
        )
        for spw, freqs in enumerate(plan.chan_freq_hz):
            sim.setspwindow(
                spwname=f"spw{spw}",
                freq=f"{freqs[0]}Hz",
                deltafreq=f"{plan.chan_width_hz}Hz",
                freqresolution=f"{plan.chan_width_hz}Hz",
                nchannels=len(freqs),
                stokes=" ".join(instrument.CORRELATIONS),
            )
        sim.setfeed(mode="perfect X Y", pol=[""])
        sim.setauto(autocorrwt=1.0 if autocorrelations else 0.0)
        sim.setlimits(shadowlimit=0.0, elevationlimit="0deg")
        for name, ra, dec in zip(
            plan.field_names, plan.field_ra_rad, plan.field_dec_rad, strict=True
        ):
            sim.setfield(
                sourcename=name,
                sourcedirection=measures.direction("J2000", f"{ra}rad", f"{dec}rad"),
            )
        sim.settimes(
            integrationtime=f"{plan.integration_s}s", usehourangle=False, referencetime=reference
        )
        for i, name in enumerate(plan.field_names):
            for spw in range(len(plan.chan_freq_hz)):
                sim.observe(
                    sourcename=name,
                    spwname=f"spw{spw}",
                    starttime=f"{i * plan.integration_s}s",
                    stoptime=f"{(i + 1) * plan.integration_s}s",
                )
        sim.close()
    sim.done()
    measures.done()
    _finish_main_table(ms_path, plan)
    list_every_station(ms_path, plan)


def list_every_station(ms_path: str, plan: ObservationPlan) -> None:
    """Rewrite the ANTENNA table as the real converter writes it: every station.

    The simulator knows only the antennas with data; their rows move to their
    stations' places, the other stations get rows of their own (position,
    dish, mount) and no data, and every antenna id (main table, FEED,
    POINTING) follows.
    """
    row_of = plan.station_index
    n_stations = len(plan.station_names)
    with table(f"{ms_path}/ANTENNA", readonly=False, ack=False) as antenna:
        columns = {c: antenna.getcol(c) for c in antenna.colnames()}
        antenna.addrows(n_stations - antenna.nrows())
        for name, values in columns.items():
            full = np.repeat(values[:1], n_stations, axis=0)
            full[row_of] = values
            if name == "POSITION":
                full = plan.station_itrf_m
            elif name in ("NAME", "STATION"):
                full = np.array(plan.station_names)
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


def _finish_main_table(ms_path: str, plan: ObservationPlan) -> None:
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
        expected = plan.time_mjd_s[field_id]
        worst = float(np.max(np.abs(times - expected)))
        if worst > TIME_TOLERANCE_S:
            raise RuntimeError(
                f"simulator wrote TIME {worst:.3f} s away from the plan "
                f"(first integration {mjd_seconds_to_iso(plan.time_mjd_s[0])})"
            )
