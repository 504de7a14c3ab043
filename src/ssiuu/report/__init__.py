"""The report: tables, figures and plain-language readings of the metrics.

Imports from any package before it.
"""
