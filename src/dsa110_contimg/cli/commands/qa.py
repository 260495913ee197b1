"""``contimg qa``: scores, qa.json and report.html of an MS and its caltables."""

from __future__ import annotations

import json
from pathlib import Path

from dsa110_contimg.cli.app import print_json
from dsa110_contimg.cli.options import add_calibrator_options, add_json_option, calibrator_of
from dsa110_contimg.errors import ContimgError


def register(commands) -> None:
    qa = commands.add_parser(
        "qa", help="QA of an MS and its caltables: scores, qa.json and report.html"
    )
    qa.add_argument("ms", help="Measurement Set (or calibrated Multi-MS)")
    qa.add_argument("--caltables", nargs="+", help="calibration tables to assess")
    qa.add_argument("--out", help="output directory (default ./qa/<ms name>)")
    add_calibrator_options(qa)
    qa.add_argument("--truth", help="simulation truth file (default: <ms>.truth.npz if present)")
    qa.add_argument("--thresholds", help="YAML of threshold overrides {name: {good: ...}}")
    qa.add_argument("--images", help="image_comparison.json of `contimg image` to fold in")
    add_json_option(qa, "print qa.json")
    qa.set_defaults(func=run_qa_command)


def run_qa_command(args) -> int:
    from dsa110_contimg.calibration.config import read_yaml_mapping
    from dsa110_contimg.ms.reads import require_ms
    from dsa110_contimg.outputs import check_output_dir
    from dsa110_contimg.qa.runner import default_truth, qa_report
    from dsa110_contimg.qa.scores import resolve_thresholds

    ms = require_ms(args.ms)
    calibrator = calibrator_of(args, ms, required=False)
    thresholds = (
        read_yaml_mapping(args.thresholds, "threshold names to anchors")
        if args.thresholds
        else None
    )
    resolve_thresholds(thresholds)
    images = _read_image_comparison(args.images) if args.images else None
    out = Path(args.out) if args.out else Path("qa") / ms.name.removesuffix(".ms")
    check_output_dir(out, "--out")
    report = qa_report(
        ms, out, args.caltables or (), calibrator, truth=args.truth or default_truth(ms),
        thresholds=thresholds, images=images,
    )  # fmt: skip
    if args.json:
        print_json(report["summary"])
    else:
        print(report["text"])
        print(f"qa.json: {report['qa_json']}")
        print(f"report: {report['report_html']}")
    return 0


def _read_image_comparison(path) -> dict:
    """The image_comparison.json of `contimg image`, or one clear error."""
    path = Path(path)
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContimgError(f"--images {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise ContimgError(
            f"--images {path} is not the JSON `contimg image` writes (image_comparison.json)"
        ) from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("comparisons"), list):
        raise ContimgError(f"--images {path} holds no image comparisons (`contimg image` JSON)")
    return loaded
