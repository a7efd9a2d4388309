"""The one exception type for bad user input.

Library functions raise :class:`InputError` with a one-line message that names the problem
and the fix; the CLI prints it as ``error: ...`` and exits with code 2, before anything is
written.
"""


class InputError(ValueError):
    """Bad input from the user (a path, a name, a number, a checkpoint)."""
