"""The command line's own commands, one module per subject; each has `add_commands(subparsers)`."""
