"""User-facing errors.

Anything the user can fix (a wrong path, a bad option, a corrupt file) is raised
as ``UserError``. The CLI prints its message on one line and exits with code 2,
without a traceback. Programming errors stay ordinary exceptions.
"""


class UserError(Exception):
    """An error caused by input the user controls; the message says what to do."""

    exit_code = 2
    # The command-line option that fixes it ("--metric"), where the message comes from a layer
    # below the CLI: the CLI adds "pass --metric NAME" for a command that has the option; the
    # dashboard, which gets the same message, has no such flag.
    option: str | None = None
