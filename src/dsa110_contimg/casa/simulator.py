"""The casatools simulator: the rows and subtables of a synthetic observation."""

from __future__ import annotations

from dsa110_contimg import casa_env, instrument


def simulate_rows(ms_path: str, plan, autocorrelations: bool) -> None:
    """The casatools simulator's MS of ``plan`` (a ``simulate.plan.ObservationPlan``).

    Subtables, rows, TIME and UVW (for each field's own phase centre), zero
    DATA; rows grouped by (integration, SPW), baselines in order within each
    group.
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
