"""The one exception type for mistakes a user can fix; command-line tools print it as one sentence."""


class LenetError(Exception):
    """A problem the user can fix (missing data, bad flag, bad image, missing checkpoint)."""
