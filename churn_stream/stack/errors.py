"""The local stack's one error type."""

from __future__ import annotations


class StackError(RuntimeError):
    """A service of the local stack could not be started, reached or stopped."""
