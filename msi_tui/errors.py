"""The one exception type that reaches the operator as a plain message."""


class OperatorError(Exception):
    """A mistake or condition the operator can fix: printed as one line, never a traceback."""

    exit_code = 2
