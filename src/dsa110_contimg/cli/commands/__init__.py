"""One module per group of commands, each with ``register(subparsers)``."""
