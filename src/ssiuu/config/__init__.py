"""Configuration: what can be configured and where things lie.

``params`` (the typed ``params.yaml``), ``profiles`` (its overlays), ``catalog`` and
``knobs`` (which unlearning methods exist and their knobs), ``layout`` (paths of every
output), ``seeds``, ``sources`` (what ``model.name`` points at) and ``errors``.
Imports nothing else from ssiuu: every other package reads it.
"""
