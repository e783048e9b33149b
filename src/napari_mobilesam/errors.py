"""The one exception type users see."""


class MobileSAMError(Exception):
    """Something the user can fix: a bad file, a wrong input, missing weights.

    The message says what went wrong and what to do about it.
    """
