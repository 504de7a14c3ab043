"""The unlearning methods: one :class:`MethodSpec` each, the one list every other reads.

Params validation, the stages' argument choices,
:func:`ssiuu.unlearning.methods.objective.build_objective` and the report all derive
their methods from :data:`CATALOG`. Pydantic only (no torch), so reading it loads no
model library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel

from ssiuu.config.knobs import (
    DPOParams,
    GAParams,
    GDParams,
    NPOParams,
    RMUParams,
    SsiuuExactParams,
    SsiuuGAParams,
    SsiuuNPOParams,
    SsiuuParams,
)


@dataclass(frozen=True)
class MethodSpec:
    """How one unlearning method is made.

    ``forget``: the forget term, ``ga`` (gradient ascent), ``npo`` or ``dpo`` (both against
    the model before unlearning) or ``rmu`` (one block's output steered to a random
    direction); ``retain``: ``outputs`` (``alpha`` × a term on the model's outputs over the
    retain text, ``unlearn.train.retain_term``: the retain answers' NLL or the KL to the
    starting model), ``activations`` (``alpha`` × the distance of that block's output from
    the starting model's) or ``None``;
    ``regulariser``: ``attribution`` (Ssiuu's, weight ``lam``) or ``None``; ``knobs``: the
    schema of ``unlearn.losses.<name>``; ``base``: the method this one regularises (``None``
    for a plain method); ``origin``: ``paper`` (the paper's method or one of its baselines)
    or ``ours`` (our extension).
    """

    name: str
    forget: Literal["ga", "npo", "dpo", "rmu"]
    retain: Literal["outputs", "activations"] | None
    regulariser: Literal["attribution"] | None
    knobs: type[BaseModel]
    base: str | None
    description: str
    origin: Literal["paper", "ours"]


CATALOG: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec(name="ga", forget="ga", retain=None, regulariser=None, knobs=GAParams,
               base=None, description="gradient ascent on the forget answers",
               origin="paper"),
    MethodSpec(name="gd", forget="ga", retain="outputs", regulariser=None, knobs=GDParams,
               base=None, description="gradient difference: GA + alpha × the retain term",
               origin="paper"),
    MethodSpec(name="npo", forget="npo", retain="outputs", regulariser=None, knobs=NPOParams,
               base=None, description="negative preference optimisation + alpha × the retain term",
               origin="paper"),
    MethodSpec(name="dpo", forget="dpo", retain="outputs", regulariser=None, knobs=DPOParams,
               base=None, description="direct preference optimisation: a refusal preferred to "
                                      "the forget answer + alpha × the retain term",
               origin="paper"),
    MethodSpec(name="rmu", forget="rmu", retain="activations", regulariser=None,
               knobs=RMUParams, base=None,
               description="representation misdirection: one block's output on forget steered "
                           "to a random direction, held on retain",
               origin="paper"),
    MethodSpec(name="ssiuu", forget="ga", retain="outputs", regulariser="attribution",
               knobs=SsiuuParams, base="gd",
               description="GD + the attribution regulariser (the paper's method)",
               origin="paper"),
    MethodSpec(name="ssiuu_exact", forget="ga", retain="outputs", regulariser="attribution",
               knobs=SsiuuExactParams, base="gd",
               description="Ssiuu with the exact gradient of its penalty (through the "
                           "attribution: the Hessian-vector term App. B drops)",
               origin="ours"),
    MethodSpec(name="ssiuu_ga", forget="ga", retain=None, regulariser="attribution",
               knobs=SsiuuGAParams, base="ga", description="GA + the attribution regulariser",
               origin="ours"),
    MethodSpec(name="ssiuu_npo", forget="npo", retain="outputs", regulariser="attribution",
               knobs=SsiuuNPOParams, base="npo",
               description="NPO (+ retain) + the attribution regulariser", origin="ours"),
)}
METHODS = tuple(CATALOG)


def method_spec(name: str) -> MethodSpec:
    """The spec of method ``name``; a :class:`ValueError` naming the known methods if none."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(f"unknown unlearning method {name!r}; "
                         f"known: {', '.join(METHODS)}") from None


def regularised_pairs() -> dict[str, str]:
    """Each regularised method and the method it regularises: ``{"ssiuu": "gd", ...}``."""
    return {spec.name: spec.base for spec in CATALOG.values() if spec.base is not None}


def gradient_modes(name: str) -> tuple[str, ...]:
    """The regulariser gradient modes (``grad``) that method ``name``'s knobs allow; empty
    for a method without a regulariser."""
    field = method_spec(name).knobs.model_fields.get("grad")
    return () if field is None else get_args(field.annotation)
