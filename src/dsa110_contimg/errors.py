"""The one exception type for failures a user can cause and fix."""


class ContimgError(Exception):
    """A problem with the user's input or environment, stated so they can fix it.

    The CLI prints the message on one line and exits with status 2.
    """
