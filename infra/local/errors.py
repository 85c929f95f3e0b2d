"""The local stack's one error type."""


class StackError(RuntimeError):
    """A local service cannot be provided; the message says what to do."""
