"""The exception types the command line turns into one line and an exit status."""


class ContimgError(Exception):
    """A problem with the user's input or environment, stated so they can fix it.

    The CLI prints the message on one line and exits with status 2.
    """


class CasaTaskError(RuntimeError):
    """A CASA task failed or did not produce what was asked for.

    The message names the task, the MS and the CASA log. Calibration steps
    record it per SPW and retry; the CLI prints it on one line and exits
    with status 1.
    """


class StepFailed(Exception):
    """A calibration step found its data unusable (no solutions kept, nothing calibrated).

    Deterministic, so never retried; recorded in the run summary for that
    step and SPW while the other SPWs go on. Distinct from
    :class:`ContimgError`, which is the user's input.
    """
