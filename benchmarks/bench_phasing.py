"""Phase-centre check and model writing on a synthetic observation.

Visibility-domain check (all rows, one lazy pass) against, in the same run:
  (a) the same metrics the way a simple script does it: per SPW, python-casacore
      ``getcol`` of DATA, MODEL_DATA, FLAG, WEIGHT and numpy;
  (b) just reading the DATA, MODEL_DATA and FLAG bytes once (row blocks).
Targets on the full MS: <= 1.5x (b), >= 2.5x faster than (a), peak < 2 GB.
Model writing: rows/s of our per-field predict against CASA ``ft`` (component list).

    python benchmarks/bench_phasing.py [--preset full] [--repeat 3] [--quick]
"""

from __future__ import annotations

import json
import tempfile

from harness import parse_args, run_child, summarise, summarise_run_ratios, write_result

SETUP = """
import numpy as np
ms = {ms!r}
"""

# Imports happen before the clock starts (see harness.run_child), for every contender.
IMPORTS = """
import dask
from casacore.tables import table, taql
from dsa110_contimg import casa_env
from dsa110_contimg.phasing.check import check_phasing
from dsa110_contimg.phasing.model import add_model_write_graph
from dsa110_contimg.sky.calibrators import lookup_calibrator
"""

OURS = """
report = check_phasing(ms, lookup_calibrator("0834+555"))
"""

PER_SPW_SCRIPT = """
main = table(ms, ack=False)
n_spw = table(ms + "/DATA_DESCRIPTION", ack=False).nrows()
for spw in range(n_spw):
    sub = taql(f"select from $main where DATA_DESC_ID == {spw}")
    data, model = sub.getcol("DATA"), sub.getcol("MODEL_DATA")
    flag, weight = sub.getcol("FLAG"), sub.getcol("WEIGHT")
    field = sub.getcol("FIELD_ID")
    cross = sub.getcol("ANTENNA1") != sub.getcol("ANTENNA2")
    for f in np.unique(field):
        rows = (field == f) & cross
        d, m = data[rows], model[rows]
        ok = ~flag[rows] & (d != 0) & (m != 0)
        w = np.broadcast_to(weight[rows][:, None, :], d.shape)[ok]
        diff = np.angle(d[ok] * np.conj(m[ok]))
        r = np.abs(np.sum(w * np.exp(1j * diff))) / w.sum()
        rm = np.abs(np.sum(w * np.exp(1j * np.angle(m[ok])))) / w.sum()
        ratio = np.median(np.abs(d[ok]) / np.abs(m[ok]))
        flagged = 1 - ok.mean()
"""

BARE_READ = """
main = table(ms, ack=False)
step = 100_000
for start in range(0, main.nrows(), step):
    n = min(step, main.nrows() - start)
    for column in ("DATA", "MODEL_DATA", "FLAG"):
        main.getcol(column, start, n)
"""

OUR_MODEL = """
dask.compute(add_model_write_graph(ms, lookup_calibrator("0834+555"), primary_beam=False))
"""

CASA_FT = """
import shutil
shutil.rmtree(ms + ".cl", ignore_errors=True)
tools, tasks = casa_env.casatools(), casa_env.casatasks()
with casa_env.casa_output_to_log():
    cl = tools.componentlist()
    cl.addcomponent(dir="J2000 128.72876667deg 55.57251944deg", flux=8.8, fluxunit="Jy",
                    freq="1.4GHz", shape="point", spectrumtype="spectral index", index=-0.38)
    cl.rename(ms + ".cl")
    cl.close()
    tasks.ft(vis=ms, complist=ms + ".cl", usescratch=True)
"""


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)

    from casacore.tables import table

    from dsa110_contimg.simulate import preset, simulate_observation

    with tempfile.TemporaryDirectory(prefix="bench-phasing-") as scratch:
        ms = f"{scratch}/bench.ms"
        simulate_observation(ms, preset(args.preset))
        with table(ms, ack=False) as t:
            n_rows = t.nrows()
        setup = SETUP.format(ms=ms) + IMPORTS
        runs = {"ft": [], "model": [], "bare_read": [], "per_spw_script": [], "ours": []}
        for _ in range(args.repeat):
            runs["ft"].append(run_child(CASA_FT, setup))
            runs["model"].append(run_child(OUR_MODEL, setup))
            for name, body in (("bare_read", BARE_READ), ("per_spw_script", PER_SPW_SCRIPT),
                               ("ours", OURS)):  # fmt: skip
                runs[name].append(run_child(body, setup))

    seconds = {k: summarise([r["seconds"] for r in v]) for k, v in runs.items()}
    peak = {k: summarise([r["peak_rss_gb"] for r in v]) for k, v in runs.items()}
    ours = seconds["ours"]["median"]
    payload = {
        "benchmark": "phasing",
        "preset": args.preset,
        "repeat": args.repeat,
        "rows": n_rows,
        "seconds": seconds,
        "peak_rss_gb": peak,
        "check_over_bare_read": ours / seconds["bare_read"]["median"],
        "per_spw_script_over_check": seconds["per_spw_script"]["median"] / ours,
        "model_rows_per_second": n_rows / seconds["model"]["median"],
        "ft_rows_per_second": n_rows / seconds["ft"]["median"],
        "model_speedup_over_ft": seconds["ft"]["median"] / seconds["model"]["median"],
        "ranges": {
            "check_over_bare_read": summarise_run_ratios(runs["ours"], runs["bare_read"]),
            "per_spw_script_over_check": summarise_run_ratios(runs["per_spw_script"], runs["ours"]),
        },
        "targets": {"check_over_bare_read": 1.5, "per_spw_script_over_check": 2.5, "peak_gb": 2.0},
    }
    print(
        f"check[{args.preset}, {n_rows} rows]: {ours:.2f} s, peak {peak['ours']['median']:.2f} GB; "
        f"ratio to bare read {payload['check_over_bare_read']:.2f}x "
        f"({seconds['bare_read']['median']:.2f} s); per-SPW script is "
        f"{payload['per_spw_script_over_check']:.2f}x slower "
        f"({seconds['per_spw_script']['median']:.2f} s, "
        f"peak {peak['per_spw_script']['median']:.2f} GB)"
    )
    print(
        f"model: {payload['model_rows_per_second']:.0f} rows/s vs ft "
        f"{payload['ft_rows_per_second']:.0f} rows/s "
        f"(ratio {payload['model_speedup_over_ft']:.2f}x)"
    )
    if not args.quick:
        print(f"written {write_result(f'phasing-{args.preset}', payload)}")
    return payload


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
