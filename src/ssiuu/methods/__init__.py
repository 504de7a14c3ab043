"""Unlearning methods: GA, GD, NPO, and Ssiuu's regulariser around GD (and GA / NPO)."""

from __future__ import annotations

from transformers import PreTrainedModel

from ssiuu.methods.objective import Objective
from ssiuu.methods.ssiuu import AttributionRegulariser, penalised_parameters
from ssiuu.params import METHODS, LossesParams


def build_objective(method: str, losses: LossesParams, model: PreTrainedModel) -> Objective:
    """The objective of ``method`` with its knobs from ``unlearn.losses.<method>``.

    ``ga``: GA; ``gd``: GD; ``npo``: NPO + retain; ``ssiuu``: GD + regulariser (the
    paper); ``ssiuu_ga`` / ``ssiuu_npo``: the regulariser around GA / NPO (our extension).
    """
    if method not in METHODS:
        raise ValueError(f"unknown unlearning method {method!r}; known: {', '.join(METHODS)}")
    knobs = getattr(losses, method)
    forget = "npo" if method.endswith("npo") else "ga"
    alpha = getattr(knobs, "alpha", None)
    regulariser = None
    if method.startswith("ssiuu"):
        regulariser = AttributionRegulariser(penalised_parameters(model, knobs.penalised),
                                             knobs.lam)
    return Objective(forget=forget, alpha=alpha, beta=getattr(knobs, "beta", 0.1),
                     regulariser=regulariser)
