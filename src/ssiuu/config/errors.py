"""Errors that carry a message fit for the person who caused them.

Every error raised for bad input names the file and the field (or the rule and the
row ids) at fault, and never echoes forget-set text.
"""


class SsiuuError(Exception):
    """Base class of every error the pipeline reports to its user."""


class ParamsError(SsiuuError):
    """A parameter in a params file is missing, unknown or of the wrong value."""


class DataError(SsiuuError):
    """An input data file is unreadable or malformed."""


class ValidationFailed(SsiuuError):
    """Prepared data broke one or more validation rules."""


class ModelSourceError(SsiuuError):
    """A model or tokenizer cannot be found or loaded."""


class RegistryError(SsiuuError):
    """The model registry holds something this run must not write over or mix with."""
