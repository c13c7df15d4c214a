"""The one error type the ops commands raise for things a user can fix."""

from __future__ import annotations


class OpsError(Exception):
    """A problem stated in one line, with the fix.

    ``python -m ops`` prints it as ``error: <what>`` and ``fix: <hint>`` and
    exits with 2, never with a traceback.
    """

    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix
