"""User-facing errors.

Anything the user can fix (a wrong path, a bad option, a corrupt file) is raised
as ``UserError``. The CLI prints its message on one line and exits with code 2,
without a traceback. Programming errors stay ordinary exceptions.
"""


class UserError(Exception):
    """An error caused by input the user controls; the message says what to do."""

    exit_code = 2
