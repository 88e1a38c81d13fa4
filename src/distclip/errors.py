"""The one exception type users see: a one-line message naming the problem and the fix."""


class DistclipError(Exception):
    """Bad input or a failed run. ``str(err)`` is a single line fit for stderr."""
