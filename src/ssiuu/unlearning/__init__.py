"""Unlearning: the methods (``methods/``: GA, GD, NPO, DPO, RMU, Ssiuu and the objective
that combines their terms), attribution (which neurons carry a fact), the stop rule and
``run`` (one method, its stop and its learning-rate ladder).

Imports from config, data, model and scoring.
"""
