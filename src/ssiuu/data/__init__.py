"""Data: the fact schema, the default generator, user-data loaders, deletion requests,
distractors, splits, Great Expectations validation, input checks and CSV tables.

Imports from :mod:`ssiuu.config` only.
"""
