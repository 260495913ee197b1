"""The QA pass over a calibrated-looking observation (DATA, MODEL_DATA, CORRECTED_DATA).

Our complete visibility QA (``run_qa``: every metric, every SPW x field, the
stale-model test, one lazy pass) against, in the same run:
  (a) reading the columns it needs once with python-casacore (row blocks) and
      doing nothing else;
  (b) the per-SPW loop a simple script would write: ``getcol`` per SPW and a
      numpy expression per metric.
Targets on the full MS: <= 1.5x (a), >= 2.5x faster than (b), peak < 2 GB and
independent of the MS size (shown on the MS and on one twice as long).

    python benchmarks/bench_qa.py [--preset full] [--repeat 3] [--quick]
"""

from __future__ import annotations

import json
import tempfile

from harness import parse_args, run_child, summarise, summarise_run_ratios, write_result

SETUP = """
import numpy as np
ms = {ms!r}
"""

IMPORTS = """
from casacore.tables import table, taql
from dsa110_contimg.qa.report import run_qa
from dsa110_contimg.sky.calibrators import lookup_calibrator
"""

OURS = """
summary = run_qa(ms, [], lookup_calibrator("0834+555")).summary
"""

BARE_READ = """
main = table(ms, ack=False)
step = 100_000
for start in range(0, main.nrows(), step):
    n = min(step, main.nrows() - start)
    for column in ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG"):
        main.getcol(column, start, n)
"""

PER_SPW_SCRIPT = """
def scatter(x, m, w):
    r = np.abs(np.sum(w * np.exp(1j * np.angle(x * np.conj(m))))) / w.sum()
    return np.degrees(np.sqrt(-2 * np.log(r)))

main = table(ms, ack=False)
n_spw = table(ms + "/DATA_DESCRIPTION", ack=False).nrows()
for spw in range(n_spw):
    sub = taql(f"select from $main where DATA_DESC_ID == {spw}")
    data, model, corrected = (sub.getcol(c) for c in ("DATA", "MODEL_DATA", "CORRECTED_DATA"))
    flag, weight = sub.getcol("FLAG"), sub.getcol("WEIGHT")
    field = sub.getcol("FIELD_ID")
    cross = sub.getcol("ANTENNA1") != sub.getcol("ANTENNA2")
    for f in np.unique(field):
        rows = (field == f) & cross
        d, m, c, fl = data[rows], model[rows], corrected[rows], flag[rows]
        ok = ~fl & (d != 0) & (m != 0) & np.isfinite(d)
        w = np.broadcast_to(weight[rows][:, None, :], d.shape)[ok]
        flagged = fl.mean()
        zeros = (d[~fl] == 0).mean()
        d_m = scatter(d[ok], m[ok], w)
        c_m = scatter(c[ok], m[ok], w)
        ratio_dm = np.median(np.abs(d[ok]) / np.abs(m[ok]))
        ratio_cm = np.median(np.abs(c[ok]) / np.abs(m[ok]))
        ratio_cd = np.median(np.abs(c[ok]) / np.abs(d[ok]))
        filled = (np.isfinite(c[ok]) & (c[ok] != 0)).mean()
"""


def build(ms: str, config) -> int:
    """Simulate, write MODEL_DATA, and add CORRECTED_DATA (DATA scaled, in row blocks)."""
    import dask
    import numpy as np
    from casacore.tables import makearrcoldesc, maketabdesc, table

    from dsa110_contimg.phasing.model import add_model_write_graph
    from dsa110_contimg.simulate import simulate_observation
    from dsa110_contimg.sky.calibrators import lookup_calibrator

    simulate_observation(ms, config)
    dask.compute(add_model_write_graph(ms, lookup_calibrator("0834+555")))
    with table(ms, readonly=False, ack=False) as t:
        shape = t.getcell("DATA", 0).shape
        desc = makearrcoldesc("CORRECTED_DATA", 0j, shape=shape, valuetype="complex",
                              options=4)  # fmt: skip
        tiles = {"DEFAULTTILESHAPE": [shape[1], shape[0], 512]}
        t.addcols(maketabdesc(desc), {"TYPE": "TiledShapeStMan", "NAME": "CorrectedTiled",
                                      "SPEC": tiles})  # fmt: skip
        step = 100_000
        for start in range(0, t.nrows(), step):
            n = min(step, t.nrows() - start)
            t.putcol("CORRECTED_DATA", t.getcol("DATA", start, n) * np.complex64(1.05), start, n)
        return t.nrows()


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)

    from dsa110_contimg.simulate import preset

    config = preset(args.preset)
    runs = {"bare_read": [], "per_spw_script": [], "ours": [], "ours_2x": []}
    with tempfile.TemporaryDirectory(prefix="bench-qa-") as scratch:
        ms, ms_2x = f"{scratch}/bench.ms", f"{scratch}/bench_2x.ms"
        n_rows = build(ms, config)
        setup = SETUP.format(ms=ms) + IMPORTS
        for _ in range(args.repeat):
            for name, body in (("bare_read", BARE_READ), ("per_spw_script", PER_SPW_SCRIPT),
                               ("ours", OURS)):  # fmt: skip
                runs[name].append(run_child(body, setup))
        import shutil

        shutil.rmtree(ms)
        n_rows_2x = build(ms_2x, config.replace(n_times=2 * config.n_times))
        setup_2x = SETUP.format(ms=ms_2x) + IMPORTS
        for _ in range(args.repeat):
            runs["ours_2x"].append(run_child(OURS, setup_2x))

    seconds = {k: summarise([r["seconds"] for r in v]) for k, v in runs.items()}
    peak = {k: summarise([r["peak_rss_gb"] for r in v]) for k, v in runs.items()}
    ours = seconds["ours"]["median"]
    payload = {
        "benchmark": "qa",
        "preset": args.preset,
        "repeat": args.repeat,
        "rows": n_rows,
        "rows_2x": n_rows_2x,
        "seconds": seconds,
        "peak_rss_gb": peak,
        "qa_over_bare_read": ours / seconds["bare_read"]["median"],
        "per_spw_script_over_qa": seconds["per_spw_script"]["median"] / ours,
        "peak_2x_over_1x": peak["ours_2x"]["median"] / peak["ours"]["median"],
        "seconds_2x_over_1x": seconds["ours_2x"]["median"] / ours,
        "ranges": {
            "qa_over_bare_read": summarise_run_ratios(runs["ours"], runs["bare_read"]),
            "per_spw_script_over_qa": summarise_run_ratios(runs["per_spw_script"], runs["ours"]),
        },
        "targets": {"qa_over_bare_read": 1.5, "per_spw_script_over_qa": 2.5, "peak_gb": 2.0},
    }
    print(
        f"qa[{args.preset}, {n_rows} rows]: {ours:.2f} s, peak {peak['ours']['median']:.2f} GB; "
        f"ratio to bare read {payload['qa_over_bare_read']:.2f}x "
        f"({seconds['bare_read']['median']:.2f} s); per-SPW script is "
        f"{payload['per_spw_script_over_qa']:.2f}x slower "
        f"({seconds['per_spw_script']['median']:.2f} s, "
        f"peak {peak['per_spw_script']['median']:.2f} GB)"
    )
    print(
        f"qa on the 2x MS ({n_rows_2x} rows): {seconds['ours_2x']['median']:.2f} s "
        f"({payload['seconds_2x_over_1x']:.2f}x), peak {peak['ours_2x']['median']:.2f} GB "
        f"({payload['peak_2x_over_1x']:.2f}x the 1x peak)"
    )
    if not args.quick:
        print(f"written {write_result(f'qa-{args.preset}', payload)}")
    return payload


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
