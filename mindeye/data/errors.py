"""Errors raised on bad input data; messages name the file, what was expected and what was found."""


class DataError(ValueError):
    """A dataset file is missing, corrupt, or not what the caller expected."""
