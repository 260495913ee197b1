"""The ``contimg`` command: the parser, and every failure turned into one line.

Exit status 0 when the work is done, 1 when a CASA task or a file
operation fails (disk full, unwritable output), 2 for input the user can
fix, 3 when a run finished but lost solutions or SPWs (degraded), 130 and
143 when interrupted. The traceback of a failure goes to the run's
``contimg.log``, never to the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import json
import logging
import math
import signal
import sys

from dsa110_contimg.errors import CasaTaskError, ContimgError

log = logging.getLogger("dsa110_contimg.cli")

# A run that finished but lost solutions or SPWs (summary status "degraded").
EXIT_DEGRADED = 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake on one line, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_parser(prog: str, description: str | None):
    """(parser, subcommands) with the options every command line shares."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument(
        "--log-dir",
        help="directory for this run's logs (default: a new one "
        "under $CONTIMG_RUN_ROOT or ./contimg_runs)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    return parser, parser.add_subparsers(dest="command", required=True, parser_class=_Parser)


def build_parser() -> argparse.ArgumentParser:
    from dsa110_contimg.cli.commands import (
        archive,
        calibrate,
        convert,
        demo,
        image,
        inspect,
        phasing,
        qa,
    )
    from dsa110_contimg.cli.commands import simulate as simulate_command

    parser, commands = command_parser(
        "contimg", "Calibrate and quality-check DSA-110 Measurement Sets on Dask."
    )
    for group in (simulate_command, convert, inspect, phasing, demo, image, qa, archive, calibrate):
        group.register(commands)
    return parser


def build_original_parser() -> argparse.ArgumentParser:
    """``python -m dsa110_contimg.calibration.cli``: the original pipeline's command lines."""
    from dsa110_contimg.cli.commands import calibrate

    parser, commands = command_parser(
        "python -m dsa110_contimg.calibration.cli", calibrate.ORIGINAL_SPELLING
    )
    calibrate.register(commands)
    parser.set_defaults(original_spelling=True)
    return parser


def main(argv=None) -> int:
    return run_command(build_parser(), argv)


def main_original_spelling(argv=None) -> int:
    return run_command(build_original_parser(), argv)


def run_command(parser, argv=None) -> int:
    """Parse, start the run's logs, run the command; failures -> one line."""
    from dsa110_contimg.runlog import start_run_logging

    args = parser.parse_args(argv)
    previous_sigterm = _raise_on_sigterm()
    # With --json, stdout carries the one JSON document only; every other line
    # (dashboard address, progress) goes to stderr.
    json_mode = getattr(args, "json", False)
    _json_stream.set(sys.stdout if json_mode else None)
    other_output = contextlib.redirect_stdout(sys.stderr) if json_mode else contextlib.nullcontext()
    try:
        args.run_dir = start_run_logging(args.command, args.log_dir, args.verbose)
        with other_output:
            return args.func(args)
    except Terminated:
        print("contimg: terminated (SIGTERM); nothing was published", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("contimg: interrupted; nothing was published", file=sys.stderr)
        return 130
    except ContimgError as err:
        print(f"contimg: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from dsa110_contimg.ms.reads import table_failure_text

        failure = table_failure_text(err) if not isinstance(err, CasaTaskError) else None
        if failure is None:
            message = _run_failure(err, getattr(args, "run_dir", None))
            if message is None:
                raise
            print(f"contimg: error: {message}", file=sys.stderr)
            return 1
        log.debug("%s failed", args.command, exc_info=True)
        print(
            f"contimg: error: a table could not be read ({failure}): the input is damaged or "
            "truncated",
            file=sys.stderr,
        )
        return 2
    except Exception as err:
        message = _run_failure(err, getattr(args, "run_dir", None))
        if message is None:
            raise
        log.debug("%s failed", args.command, exc_info=True)
        print(f"contimg: error: {message}", file=sys.stderr)
        return 1
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


_json_stream: contextvars.ContextVar = contextvars.ContextVar("json_stream", default=None)


def print_json(document) -> None:
    """Write ``document`` as the command's one JSON document (strict: NaN and inf as null)."""
    stream = _json_stream.get() or sys.stdout
    stream.write(json.dumps(_strict(document), indent=2, default=str, allow_nan=False) + "\n")
    stream.flush()


def _strict(value):
    """``value`` with numpy values as Python ones and non-finite floats as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "tolist"):
        return _strict(value.tolist())
    return value


def print_first(label: str, lines: list[str], summary_path) -> None:
    """One stderr line: the first of ``lines``, how many more, and where the rest is."""
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    print(
        f"contimg: {label}: {' '.join(lines[0].split())}{more}; see {summary_path}",
        file=sys.stderr,
    )


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C, so every product in progress is dropped."""


def _raise_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` in the main thread; the previous handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)


def _run_failure(err: Exception, run_dir) -> str | None:
    """One line for a failure outside the program's control; None for anything else."""
    if isinstance(err, CasaTaskError):
        return " ".join(str(err).split())
    if isinstance(err, OSError):
        if err.strerror and err.filename:
            return f"{err.strerror}: {err.filename}"
        return " ".join(str(err).split()) or type(err).__name__
    distributed = sys.modules.get("distributed")
    if distributed is not None and isinstance(err, distributed.KilledWorker):
        tries = err.allowed_failures + 1
        return (
            f"a Dask worker process died running {err.task} ({tries} "
            f"{'try' if tries == 1 else 'tries'}): out of memory, a full disk or a CASA crash; "
            f"the task's CASA log is under {run_dir}"
        )
    return None
