"""The ServerApp factory, and one call that runs a distclip config in Flower's simulation runtime.

A Flower app (``flwr run .``) names ``distclip.flower.server_app()`` and ``distclip.flower.client_app()``
objects; its ``[tool.flwr.app.config]`` gives ``config`` (a distclip TOML, relative to the app's folder),
optionally ``set`` (space-separated ``section.key=value`` overrides, as ``distclip run --set``), ``out`` (a run
directory) and ``fraction-train`` (see :mod:`distclip.flower.sampling`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from ..config import Config, from_dict, load
from ..errors import DistclipError
from .client import client_app
from .server import DistclipStrategy, FlowerRun


def server_app(config: Config | dict[str, Any] | str | Path | None = None, out: str | Path | None = None, *,
               base: str | Path = ".", on_result: Callable[[FlowerRun], None] | None = None) -> ServerApp:
    """A ServerApp running ``config`` (default: the run config's ``config``, a path relative to ``base``, with the
    run config's ``set`` overrides);
    ``on_result`` receives the finished run."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        rc = context.run_config
        cfg = config if config is not None else load(Path(base) / str(rc["config"]), str(rc.get("set", "")).split())
        where = out if out is not None else rc.get("out") or None
        try:
            result = DistclipStrategy(cfg, where, fraction=float(rc.get("fraction-train", 1.0))).start(grid)
        except DistclipError as e:
            print(f"distclip: error: {e}", file=sys.stderr, flush=True)  # the one line, before Flower's traceback
            raise
        if on_result is not None:
            on_result(result)

    return app


def run_simulation(config: Config | dict[str, Any] | str | Path, out: str | Path | None = None, *,
                   cpus_per_node: float = 1.0) -> FlowerRun:
    """Run ``config`` in Flower's simulation runtime (one virtual SuperNode per client); the rows and
    summary as :func:`distclip.run` gives them."""
    from flwr.simulation import run_simulation as flower_simulation

    cfg = config if isinstance(config, Config) else from_dict(config) if isinstance(config, dict) else load(config)
    results: list[FlowerRun] = []
    flower_simulation(server_app(cfg, out, on_result=results.append), client_app(),
                      num_supernodes=cfg.partition.clients,
                      backend_config={"client_resources": {"num_cpus": cpus_per_node, "num_gpus": 0.0}})
    return results[0]
