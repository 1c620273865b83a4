"""Errors a user can fix from the command line; the CLI prints them as one line, exit code 2."""


class UsageError(ValueError):
    """Bad input (a path, a value, a combination); the message names what was wrong and what is valid."""
