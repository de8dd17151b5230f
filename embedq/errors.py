"""The two kinds of error every embedq component raises.

Retryable errors are worth another attempt (a service hiccup, running out of
memory); permanent errors are not (bad input, a model that cannot be loaded).
Callers decide retry or fail by kind alone, never by message.
"""


class EmbedqError(Exception):
    """Base of every error embedq raises on purpose."""


class RetryableError(EmbedqError):
    """The same work may succeed if tried again later."""


class PermanentError(EmbedqError):
    """The same work will fail the same way however often it is tried."""


class NotFoundError(PermanentError, LookupError):
    """What was asked for does not exist (or is not the caller's to see)."""


class ModelLoadError(PermanentError):
    """A model folder or hub id cannot be turned into a working model."""


class UnsupportedOutputError(PermanentError):
    """An output (dense, sparse, colbert) was asked of a model that lacks it."""


class InvalidSettingError(PermanentError):
    """A setting has a value that cannot work (a budget of '8 gallons', a max length of 0)."""
