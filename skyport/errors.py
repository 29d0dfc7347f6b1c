"""The command line's error: the message is printed as `skyport: <message>`, exit status 1."""

from jobs.family import CommandFailed


class CommandError(CommandFailed):
    """A command could not do what was asked; the message says why.

    The job families' own commands raise `jobs.family.CommandFailed` (they cannot import the
    command line); both end the same way.
    """
