"""The ``contimg`` command line: a thin layer over typed library calls.

``app`` holds the parser and the failure-to-one-line mapping, ``options``
the option groups every command shares, ``commands`` one module per group
of commands, each importing its library code only when it runs.
"""

from dsa110_contimg.cli.app import main

__all__ = ["main"]
