"""Each unlearning method's knobs: the schema of ``unlearn.losses.<method>`` in params.yaml.

Pydantic only, so :mod:`ssiuu.config.params` and :mod:`ssiuu.config.catalog` read it without
loading torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GAParams(_Knobs):
    """Gradient ascent on the forget set: no knob of its own."""


class GDParams(_Knobs):
    """Gradient difference: ascent on forget + ``alpha`` × NLL on retain."""

    alpha: float = Field(1.0, ge=0)


class NPOParams(GDParams):
    """Negative preference optimisation (+ ``alpha`` × retain NLL); ``beta`` its temperature."""

    beta: float = Field(0.1, gt=0)


class DPOParams(GDParams):
    """Direct preference optimisation (+ ``alpha`` × retain NLL): ``refusal`` preferred to the
    forget answer, ``beta`` its temperature."""

    beta: float = Field(0.1, gt=0)
    refusal: str = Field("I don't know.", min_length=1)


class RMUParams(_Knobs):
    """Representation misdirection: steer block ``layer``'s output on forget inputs towards
    a random direction (seeded by ``seed``) scaled by ``steering``; hold it on retain inputs
    with weight ``alpha``; only the MLP weights of ``trained_layers`` train (``None``:
    ``layer`` and the two blocks below it)."""

    alpha: float = Field(100.0, ge=0)
    layer: int = Field(2, ge=0)
    steering: float = Field(20.0, gt=0)
    trained_layers: list[int] | None = Field(None, min_length=1)
    seed: int = 0


class RegulariserParams(_Knobs):
    """Ssiuu's attribution regulariser: weight ``lam``, which parameters it covers, and
    which gradient of it the step takes.

    ``penalised``: ``linear`` = the weights of the linear layers inside the transformer
    blocks (where the diagnosis looks); ``all`` = every trainable parameter.
    ``grad``: ``first_order`` = the paper's App. B (``∂P/∂φ`` held constant); ``exact`` =
    through the attribution too (a Hessian–vector product more per step, eager attention).
    """

    lam: float = Field(1.0e-3, ge=0)
    penalised: Literal["linear", "all"] = "linear"
    grad: Literal["first_order", "exact"] = "first_order"


class SsiuuParams(GDParams, RegulariserParams):
    """Ssiuu as in the paper: GD plus the regulariser."""


class SsiuuExactParams(SsiuuParams):
    """Ssiuu with the exact gradient of its penalty (our formulation): the same knobs, the
    mode fixed, so that its models, metrics and registry entries never mix the two modes."""

    grad: Literal["exact"] = "exact"


class SsiuuGAParams(RegulariserParams):
    """Our extension: GA plus the regulariser."""


class SsiuuNPOParams(NPOParams, RegulariserParams):
    """Our extension: NPO (+ retain) plus the regulariser."""
