"""The self-contained ``report.html``: verdicts, score tables, matplotlib plots inlined as PNG."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from dsa110_contimg.ms.publish import publish_file
from dsa110_contimg.qa import visibility_metrics as vm
from dsa110_contimg.qa.scores import verdict_of

COLOURS = {"good": "#1a7f37", "suboptimal": "#9a6700", "warning": "#bc4c00", "error": "#cf222e",
           "not measured": "#57606a"}  # fmt: skip


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def plot_bandpass(table: dict, antenna_names) -> str:
    """Amplitude and phase (deg) of every antenna's bandpass, SPWs side by side."""
    values, antenna, spw = table["values"], table["antenna"], table["spw"]
    n_chan = values.shape[1]
    fig, (ax_amp, ax_phase) = _figure(2, 1, figsize=(10, 6), sharex=True)
    from matplotlib.collections import LineCollection

    cmap = __import__("matplotlib").colormaps["viridis"]
    ants, ant_index = np.unique(antenna, return_inverse=True)
    colours = cmap(ant_index.ravel() / max(len(ants) - 1, 1))
    # one collection of every (antenna, SPW) line per panel: thousands of lines drawn at once
    x = spw[:, None] * n_chan + np.arange(n_chan)[None, :]
    for ax, y in ((ax_amp, np.abs(values[:, :, 0])),
                  (ax_phase, np.degrees(np.angle(values[:, :, 0])))):  # fmt: skip
        ax.add_collection(LineCollection(np.stack([x, y], axis=-1), colors=colours, lw=0.7))
        finite = y[np.isfinite(y)]
        if finite.size:
            pad = 0.05 * (finite.max() - finite.min()) or 0.1
            ax.set_ylim(finite.min() - pad, finite.max() + pad)
    ax_amp.set_xlim(-0.5, (spw.max() + 1) * n_chan - 0.5 if len(spw) else 1)
    for s in np.unique(spw):
        for ax in (ax_amp, ax_phase):
            ax.axvline(s * n_chan - 0.5, color="0.8", lw=0.5)
    ax_amp.set_ylabel("|B| (first correlation)")
    ax_phase.set_ylabel("phase (deg)")
    ax_phase.set_xlabel(f"channel (SPW x {n_chan} + channel); colour = antenna")
    ax_amp.set_title(f"Bandpass {Path(table['path']).name}: {len(ants)} antennas")
    return _png(fig)


def plot_spw_bars(summary: dict) -> str:
    """Per-SPW headline metrics of the calibrator fields, with their thresholds."""
    spws = [e for e in summary["visibilities"]["spws"] if "calibrator" in e]
    role = "calibrator"
    if not spws:
        spws = [e for e in summary["visibilities"]["spws"] if "target" in e]
        role = "target"
    thresholds = summary["thresholds"]
    x = np.array([e["spw"] for e in spws])

    def values(key):
        return np.array([
            np.nan if e[role]["metrics"].get(key, {}).get("value") is None
            else e[role]["metrics"][key]["value"] for e in spws
        ], float)  # fmt: skip

    fig, axes = _figure(1, 3, figsize=(13, 3.6))
    phase_key = "phase_scatter_aligned_deg"
    for offset, key, label in (
        (-0.2, "data_model_phase_scatter_deg", "DATA-MODEL"),
        (0.2, "corrected_model_phase_scatter_deg", "CORRECTED-MODEL"),
    ):
        axes[0].bar(x + offset, values(key), width=0.4, label=label)  # fmt: skip
    for name, style in (("good", ":"), ("warning", "--"), ("error", "-")):
        axes[0].axhline(thresholds[phase_key][name], color=COLOURS[name], ls=style, lw=1,
                        label=f"{name} limit")  # fmt: skip
    axes[0].set_ylabel("phase scatter (deg)")
    axes[0].legend(fontsize=7)
    for offset, key, label in (
        (-0.2, "median_data_model_amp_ratio", "|DATA|/|MODEL|"),
        (0.2, "median_corrected_model_amp_ratio", "|CORRECTED|/|MODEL|"),
    ):
        axes[1].bar(x + offset, values(key), width=0.4, label=label)  # fmt: skip
    good = thresholds["median_corrected_model_amp_ratio"]["good"]
    for level in (good, 1 / good):
        axes[1].axhline(level, color=COLOURS["good"], ls=":", lw=1)
    axes[1].set_ylabel("median amplitude ratio")
    axes[1].legend(fontsize=7)
    axes[2].bar(x - 0.2, values("flagged_fraction"), width=0.4, label="flagged")
    axes[2].bar(x + 0.2, values("corrected_filled_fraction"), width=0.4, label="CORRECTED filled")
    axes[2].axhline(thresholds["flagged_fraction"]["warning"], color=COLOURS["warning"], ls="--",
                    lw=1, label="flagged: warning limit")  # fmt: skip
    axes[2].set_ylim(0, 1.05)
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("SPW")
        ax.set_xticks(x)
    fig.suptitle(f"Per-SPW metrics ({role} fields)")
    return _png(fig)


def _summed(spw_results, fields):
    total = None
    for r in spw_results:
        part = r.partials.select(fields)
        total = part if total is None else total.plus_spw(part)
    return total


def plot_phase_histograms(plots: dict) -> str | None:
    fields = plots["calibrator_fields"]
    if not fields:
        return None
    total = _summed(plots["spw_results"], fields)
    edges = vm.phase_histogram_edges_deg()
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig, ax = _figure(figsize=(6.5, 3.6))
    for counts, label in (
        (total.phase_hist_data_model[0], "DATA vs MODEL (before)"),
        (total.phase_hist_corrected_model[0], "CORRECTED vs MODEL (after)"),
    ):
        if counts.sum() > 0:
            ax.step(centres, counts / counts.sum(), where="mid", label=label)  # fmt: skip
    ax.set_xlabel("phase difference (deg)")
    ax.set_ylabel("fraction of visibilities")
    ax.set_xlim(-180, 180)
    ax.legend(fontsize=8)
    ax.set_title("Calibrator fields: phase difference to MODEL")
    return _png(fig)


def plot_uv_profile(summary: dict) -> str | None:
    profiles = summary["visibilities"]["uv_profile"]
    if not profiles:
        return None
    fig, axes = _figure(1, 2, figsize=(12, 3.6))
    if "calibrator" in profiles:
        p = profiles["calibrator"]
        x = np.array(p["uv_centre_m"])
        for key, label in (
            ("data_model_amp_ratio", "|DATA|/|MODEL| (before)"),
            ("corrected_model_amp_ratio", "|CORRECTED|/|MODEL| (after)"),
        ):
            axes[0].plot(x, np.array(p[key], float), "o-", label=label)  # fmt: skip
        for key, label in (
            ("data_model_coherence", "DATA coherence (before)"),
            ("corrected_model_coherence", "CORRECTED coherence (after)"),
        ):
            axes[0].plot(x, np.array(p[key], float), "s--", label=label)  # fmt: skip
        axes[0].set_title("Calibrator fields: amplitude and coherence vs uv distance")
        axes[0].set_ylabel("ratio / coherence")
    if "target" in profiles:
        p = profiles["target"]
        x = np.array(p["uv_centre_m"])
        axes[1].plot(x, np.array(p["mean_abs_data"], float), "o-", label="DATA (before)")
        axes[1].plot(x, np.array(p["mean_abs_corrected"], float), "o-", label="CORRECTED (after)")
        axes[1].set_title("Target fields: mean amplitude vs uv distance")
        axes[1].set_ylabel("mean |V| (Jy)")
    for ax in axes:
        ax.set_xlabel("uv distance (m)")
        if ax.lines:
            ax.legend(fontsize=7)
    return _png(fig)


def plot_flag_map(plots: dict) -> str:
    """Flagged fraction per antenna and channel (SPWs side by side), all fields."""
    spw_results = plots["spw_results"]
    blocks = []
    for r in spw_results:
        flagged, total = r.partials.flag_map[:, :, 0], r.partials.flag_map[:, :, 1]
        blocks.append(np.where(total > 0, flagged / np.where(total > 0, total, 1), np.nan))
    rows = plots["antennas_with_data"]
    image = np.concatenate(blocks, axis=1)[rows]
    names = [plots["antenna_names"][a] for a in rows]
    fig, ax = _figure(figsize=(10, max(3.0, 0.12 * len(names) + 1)))
    shown = ax.imshow(image, aspect="auto", interpolation="nearest", cmap="magma_r", vmin=0,
                      vmax=1)  # fmt: skip
    step = max(1, len(names) // 24)
    ax.set_yticks(range(0, len(names), step))
    ax.set_yticklabels(names[::step], fontsize=6)
    ax.set_xlabel("channel (SPWs side by side)")
    ax.set_title("Flag map: flagged fraction per antenna and channel")
    fig.colorbar(shown, ax=ax, label="flagged fraction")
    return _png(fig)


def _metric_cell(entry: dict | None) -> str:
    if not entry:
        return "<td>-</td>"
    value = entry["value"]
    text = "-" if value is None else f"{value:.3g}"
    colour = COLOURS.get(entry["verdict"], "#57606a")
    title = html.escape(entry["line"])
    return f'<td style="color:{colour}" title="{title}">{text}</td>'


def _table(rows, columns) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in columns)
    body = []
    for label, metrics in rows:
        cells = "".join(_metric_cell(metrics.get(key)) for _, key in columns)
        scores = [e["score"] for e in metrics.values() if e.get("score") is not None
                  and e.get("in_overall")]  # fmt: skip
        worst = min(scores) if scores else float("nan")
        verdict = verdict_of(worst) if math.isfinite(worst) else "not measured"
        body.append(
            f"<tr><th>{html.escape(label)}</th>{cells}"
            f'<td style="color:{COLOURS[verdict]}">{verdict}</td></tr>'
        )
    return f"<table><tr><th></th>{head}<th>verdict</th></tr>{''.join(body)}</table>"


VIS_COLUMNS = [
    ("flagged", "flagged_fraction"),
    ("D-M phase (deg)", "data_model_phase_scatter_deg"),
    ("C-M phase (deg)", "corrected_model_phase_scatter_deg"),
    ("|D|/|M|", "median_data_model_amp_ratio"),
    ("|C|/|M|", "median_corrected_model_amp_ratio"),
    ("|C|/|D|", "median_corrected_data_amp_ratio"),
    ("C filled", "corrected_filled_fraction"),
    ("decorrelation", "corrected_decorrelation"),
    ("model coherence", "model_coherence"),
    ("spectral coh. C/D", "spectral_coherence_gain"),
]
CAL_COLUMNS = [
    ("flagged", "flagged_fraction"),
    ("dead antennas", "n_fully_flagged_antennas"),
    ("SNR median", "snr_median"),
    ("|g| out of range", "amp_out_of_range_fraction"),
    ("roughness", "bandpass_amp_roughness"),
    ("phase scatter (deg)", "gain_phase_scatter_deg"),
    ("amp error vs truth", "bandpass_amp_error"),
    ("phase error vs truth (deg)", "bandpass_phase_error_deg"),
]

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
td, th { border: 1px solid #d0d7de; padding: 3px 7px; text-align: right; }
th { background: #f6f8fa; }
.badge { display: inline-block; padding: 4px 12px; color: white; border-radius: 4px; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: 0.5em 0; }
li { margin: 2px 0; }
"""


def render_report(summary: dict, plots: dict, images: dict | None = None) -> str:
    """The whole page as one string; ``images`` (image_comparison.json content) is folded in."""
    verdict = summary["overall_verdict"]
    score = summary["overall_score"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>QA {html.escape(Path(summary['ms']).name)}</title><style>{STYLE}</style>",
        "</head><body>",
        f"<h1>QA of {html.escape(summary['ms'])}</h1>",
        f'<p><span class="badge" style="background:{COLOURS[verdict]}">overall: {verdict}'
        + (f" ({score:.2f})" if score is not None else "")
        + "</span> "
        f"schema {summary['schema']} v{summary['version']}, {summary['created']}</p>",
    ]
    if summary["skipped"]:
        parts.append("<h2>Skipped</h2><ul>")
        parts += [f"<li>{html.escape(s)}</li>" for s in summary["skipped"]]
        parts.append("</ul>")
    parts.append("<h2>Verdicts</h2><ul>")
    parts += [f"<li>{html.escape(line)}</li>" for line in summary["verdicts"]]
    parts.append("</ul>")
    vis = summary["visibilities"]
    rows = []
    for role in ("calibrator", "target"):
        if role in vis:
            rows.append((f"all {role} fields", vis[role]["metrics"]))
    for e in vis["spws"]:
        for role in ("calibrator", "target"):
            if role in e:
                rows.append((f"SPW {e['spw']} {role}", e[role]["metrics"]))
    parts.append("<h2>Visibilities per SPW</h2>" + _table(rows, VIS_COLUMNS))
    field_rows = [(f"{f['field']} {f['name']} ({f['role']}, {f['phasing_context']})",
                   f["metrics"]) for f in vis["fields"]]  # fmt: skip
    parts.append("<h2>Visibilities per field</h2>" + _table(field_rows, VIS_COLUMNS))
    for t in summary["caltables"]:
        name = html.escape(Path(t["path"]).name)
        if "error" in t:
            parts.append(f"<h2>Caltable {name}</h2><p>{html.escape(t['error'])}</p>")
            continue
        dead = ", ".join(t["fully_flagged_antennas"]) or "none"
        parts.append(
            f"<h2>Caltable {name} ({t['kind']})</h2><p>fully flagged antennas: {dead}</p>"
            + _table([(f"SPW {s['spw']}", s["metrics"]) for s in t["spws"]], CAL_COLUMNS)
        )
    bad_antennas = [a for a in vis["antennas"] if a["flagged_fraction"] == 1.0]
    if bad_antennas:
        names = ", ".join(a["name"] for a in bad_antennas)
        parts.append(f"<p>Antennas with every visibility flagged: {html.escape(names)}</p>")
    figures = [("Per-SPW metrics and thresholds", plot_spw_bars(summary))]
    figures += [("Bandpass", plot_bandpass(t, plots["antenna_names"]))
                for t in plots["caltables"] if t is not None]  # fmt: skip
    figures += [("Phase difference before and after", plot_phase_histograms(plots)),
                ("Amplitude vs uv distance", plot_uv_profile(summary)),
                ("Flag map", plot_flag_map(plots))]  # fmt: skip
    parts.append("<h2>Plots</h2>")
    for title, png in figures:
        if png:
            parts.append(f"<h3>{html.escape(title)}</h3>" + _img(title, png))
    if images:
        parts.append(_imaging_section(images))
    parts.append("</body></html>")
    return "\n".join(parts)


def _imaging_section(images: dict) -> str:
    rows = []
    for c in images.get("comparisons", []):
        imp = c
        rows.append(
            "<tr>" + "".join(
                f"<td>{html.escape(str(v))}</td>" for v in (
                    Path(c.get("ms", "")).name, c.get("label", c.get("field")),
                    _fmt(imp.get("noise_ratio")), _fmt(imp.get("dynamic_range_ratio")),
                    _fmt(imp.get("coherence_before")), _fmt(imp.get("coherence_after")),
                    _fmt(imp.get("flux_error_before")), _fmt(imp.get("flux_error_after")),
                )
            ) + "</tr>"
        )  # fmt: skip
    header = "".join(f"<th>{h}</th>" for h in (
        "MS", "field", "noise DATA/CORRECTED", "DR CORRECTED/DATA", "coherence before",
        "coherence after", "flux error before", "flux error after"))  # fmt: skip
    section = ["<h2>Imaging: DATA vs CORRECTED</h2>", f"<table><tr>{header}</tr>{''.join(rows)}"
               "</table>"]  # fmt: skip
    for png_path in (c.get("png") for c in images.get("comparisons", [])):
        if png_path and os.path.exists(png_path):
            data = base64.b64encode(Path(png_path).read_bytes()).decode("ascii")
            section.append(_img("DATA vs CORRECTED images", data))
    return "\n".join(section)


def _img(title: str, png_base64: str) -> str:
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png_base64}">'


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_report(out_dir, summary: dict, plots: dict, images: dict | None = None) -> dict:
    """Write ``qa.json`` and ``report.html`` into ``out_dir`` (each published by rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render_report(summary, plots, images)
    paths = {"qa_json": out_dir / "qa.json", "report_html": out_dir / "report.html"}
    publish_file(paths["qa_json"], json.dumps(summary, indent=2, default=_json_default))
    publish_file(paths["report_html"], page)
    return {k: str(v) for k, v in paths.items()}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
