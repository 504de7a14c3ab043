"""Unlearning methods: GA, GD, NPO, and Ssiuu's regulariser around GD (and GA / NPO).

Which methods exist and how each is made is :mod:`ssiuu.methods.catalog` (no torch: params
validation and the report read it cheaply); :func:`ssiuu.methods.objective.build_objective`
turns a method and its knobs into the loss the training loop runs.
"""
