"""The recipe's CASA parameters: what each solve and apply asks of gaincal, bandpass and
applycal, shared by the Dask steps, the native engine and the serial reference run."""

from __future__ import annotations

from dsa110_contimg.calibration.config import CalibrationConfig
from dsa110_contimg.calibration.plan import ObservationPlan
from dsa110_contimg.ms import caltables


def selection_string(ids) -> str:
    return ",".join(str(i) for i in ids)


def solve_parameters(step: str, obs: ObservationPlan, config: CalibrationConfig, combined: bool):
    """CASA parameters of a solve step (without vis, caltable and applied tables)."""
    common = {"field": selection_string(obs.cal_fields), "refant": obs.refant}
    spw_combine = ",spw" if combined else ""
    if step == "prebp":
        c = config.prebp
        return "gaincal", {
            **common,
            "solint": c.solint,
            "calmode": "p",
            "gaintype": "G",
            "uvrange": c.uvrange,
            "minsnr": c.minsnr,
            "minblperant": c.minblperant,
            "combine": spw_combine.lstrip(","),
        }
    if step == "kcal":
        c = config.delay
        return "gaincal", {
            **common,
            "solint": c.solint,
            "gaintype": "K",
            "minsnr": c.minsnr,
            "combine": "scan,field",
        }
    if step == "bpcal":
        c = config.bandpass
        return "bandpass", {
            **common,
            "solint": c.solint,
            "bandtype": "B",
            "combine": "scan,field" if c.combine_field else "scan",
            "solnorm": c.solnorm,
            "minsnr": c.minsnr,
            "fillgaps": c.fillgaps,
            "minblperant": c.minblperant,
            "uvrange": c.uvrange,
        }
    c = config.gains
    index = 0 if step == "gpcal" else int(step[: -len("gcal")]) - 1
    return "gaincal", {
        **common,
        "solint": c.solints[index],
        "calmode": c.calmode,
        "gaintype": "G",
        "minsnr": c.minsnr,
        "minblperant": c.minblperant,
        "uvrange": c.uvrange,
        "combine": "scan,field" + spw_combine,
    }


# Which earlier tables each solve applies on the fly.
PRIOR_STEPS = {"prebp": (), "kcal": ("prebp",), "bpcal": ("prebp", "kcal")}
GAIN_PRIOR_STEPS = ("kcal", "bpcal")


def applied_tables(priors, tables_by_step, n_spw_total):
    """gaintable/interp/spwmap for the earlier tables a solve or apply uses."""
    gaintable, interp, spwmap = [], [], []
    for step in priors:
        table = tables_by_step.get(step)
        if table is None:
            continue
        info = caltables.caltable_info(table)
        gaintable.append(table)
        interp.append(caltables.APPLY_INTERP.get(info.kind, "linear"))
        spwmap.append(caltables.spwmap_for(info, n_spw_total))
    if not any(spwmap):
        spwmap = []
    return {"gaintable": gaintable, "interp": interp, "spwmap": spwmap}
