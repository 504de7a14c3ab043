"""Tune a regularised method's λ on the tuning seeds, one choice per gradient mode.

The grid (``tuning.lams`` × ``tuning.modes`` of params.yaml) runs through the sweep flow
as DVC experiments on ``tuning.seeds`` with only the method and its base method unlearned,
each to the ``report`` stage, after one experiment with the base method alone: it trains
the base and oracle models once, and DVC's run cache hands them to the points instead of
each retraining them.
:mod:`ssiuu.attack.tuning` then applies the criterion to the experiments' headline metrics.
The table and the choices are published as the Prefect Markdown artifact
``lambda-tuning`` and returned; writing the chosen λ into params.yaml
(``-S unlearn.losses.<method>.lam=...``) is left to the user, so a tuning run changes no
reported result by itself. The tuning seeds must not be among ``seeds``: the report on
those seeds never selects anything.

Run it from the project root::

    python -m flows.tune ssiuu --workers 2
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.sweep import sweep
from ssiuu.attack.tuning import choose, tuning_points, tuning_table
from ssiuu.config.catalog import gradient_modes, regularised_pairs
from ssiuu.config.errors import ParamsError
from ssiuu.config.params import Params, load_params


def tuning_grid(params: Params, method: str) -> dict[str, list[Any]]:
    """The sweep's grid for ``method``: the tuning seeds, the method and its base method
    alone, each mode of ``params.tuning`` that the method allows (``ssiuu_exact`` has only
    ``exact``) and each λ. Raises :class:`ParamsError` for a method
    without a regulariser or tuning seeds among the reported ``seeds``."""
    pairs = regularised_pairs()
    if method not in pairs:
        raise ParamsError(f"tune: {method!r} has no regulariser to tune; regularised "
                          f"methods: {', '.join(pairs)}")
    overlap = sorted(set(params.tuning.seeds) & set(params.seeds))
    if overlap:
        raise ParamsError(f"params.yaml: tuning.seeds {overlap} are also in seeds: the "
                          "report's seeds must never select anything")
    return {"seeds": [list(params.tuning.seeds)],
            "unlearn.methods": [[pairs[method], method]],
            f"unlearn.losses.{method}.grad": [mode for mode in params.tuning.modes
                                               if mode in gradient_modes(method)],
            f"unlearn.losses.{method}.lam": list(params.tuning.lams)}


@flow(name="ssiuu-tune")
def tune(method: str = "ssiuu", root: str = ".", engine: Literal["queue", "dask"] = "dask",
         workers: int = 2, scheduler: str | None = None) -> dict[str, float | None]:
    """Run the tuning grid of ``method`` for the project at ``root`` and return the chosen
    λ per mode (``None`` where no point is admissible)."""
    project = Path(root).resolve()
    params = load_params(project / "params.yaml")
    grid = tuning_grid(params, method)
    base = regularised_pairs()[method]
    prefix = f"tune-{method}-{datetime.now():%Y%m%d-%H%M%S}"
    sweep(grid={"seeds": grid["seeds"], "unlearn.methods": [[base]]}, root=str(project),
          engine=engine, workers=1, scheduler=scheduler, target="report",
          name_prefix=f"{prefix}-shared")
    rows = sweep(grid=grid, root=str(project), engine=engine, workers=workers,
                 scheduler=scheduler, target="report", name_prefix=prefix)
    points = tuning_points(rows, method, base, params.relearn.attacks,
                           len(params.tuning.seeds), params.tuning.retain_tolerance)
    chosen = choose(points)
    table = tuning_table(points, chosen, method, base)
    create_markdown_artifact(key="lambda-tuning", markdown=table,
                             description=f"λ of {method} on tuning seeds "
                                         f"{params.tuning.seeds}")
    get_run_logger().info("λ tuning of %s:\n%s", method, table)
    return {mode: None if point is None else point.lam for mode, point in chosen.items()}


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.tune [METHOD] [--engine dask|queue] [--workers N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", nargs="?", default="ssiuu")
    parser.add_argument("--engine", choices=("dask", "queue"), default="dask")
    parser.add_argument("--workers", type=int, default=2, help="experiments at once")
    parser.add_argument("--scheduler", help="a Dask scheduler address (default: local)")
    parser.add_argument("--root", default=".", help="the DVC project (default: .)")
    args = parser.parse_args(argv)
    try:
        chosen = tune(method=args.method, root=args.root, engine=args.engine,
                      workers=args.workers, scheduler=args.scheduler)
    except (ParamsError, RuntimeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    for mode, lam in chosen.items():
        print(f"{mode}: " + ("no admissible λ" if lam is None else f"λ = {lam:g}"))


if __name__ == "__main__":
    main()
