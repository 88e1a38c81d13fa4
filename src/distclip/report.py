"""Plain-text summaries of finished runs: the results table and the per-value figure groups of a sweep."""

from __future__ import annotations

from typing import Any


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5) else f"{v:.4g}"
    return str(v)


HEADLINES = {"test_acc": "test acc", "valid_ppl": "valid ppl"}  # a problem's headline metric, when it logs one


def format_table(results: list[Any]) -> str:
    """A plain-text table of final values, one row per run: the problem's headline metric (test accuracy,
    validation perplexity) when it logs one, ``min |grad f|^2`` only for problems without one (for networks
    the minimum over the logged steps is the start's), ``never`` for runs that never clipped."""
    headlines = [k for k in HEADLINES if any(k in r.metrics[-1] for r in results)]
    networks = bool(headlines)
    head = ["run", "steps", "loss", *(HEADLINES[k] for k in headlines), "|grad f|^2",
            *([] if networks else ["min |grad f|^2"]), "rounds", "floats up", "last clip", "wall s"]
    rows = []
    for r in results:
        final = r.metrics[-1]
        last_clip = r.summary.get("last_clip_step", -1)
        rows.append([
            r.label, final["step"], final["loss"], *(final.get(k, "—") for k in headlines), final["grad_norm_sq"],
            *([] if networks else [min(m["grad_norm_sq"] for m in r.metrics)]), final["comm_rounds"],
            final["floats_up"], "never" if last_clip < 0 else last_clip, round(final["wall_s"], 2),
        ])
    cells = [head] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def grid_groups(results: list[Any]) -> dict[str, list[Any]]:
    """Per-value figure groups for the grid keys of a sweep (runs that do not set the key join every group)."""
    groups: dict[str, list[Any]] = {}
    keys = {k for r in results for k in _grid_keys(r)}
    for key in sorted(keys):
        section, _, name = key.rpartition(".")
        values = sorted({_value(r, section, name) for r in results if _value(r, section, name) is not None},
                        key=_order)
        if len(values) < 2:
            continue
        for v in values:
            members = [r for r in results if _value(r, section, name) in (v, None)]
            groups[f"{name}={fmt(v)}"] = members
    return groups


def _order(v: Any) -> tuple:
    """Numbers by value (ε = 3, 9, 27), then anything else as text."""
    return (0, v, "") if isinstance(v, int | float) and not isinstance(v, bool) else (1, 0, str(v))


def group_file(group: str) -> str:
    """A figure group's file stem: ``local_steps=16`` -> ``local_steps-16`` (no '=' in file names)."""
    return group.replace("=", "-")


def _grid_keys(r: Any) -> set[str]:
    return {k for entry in r.extra.get("sweep", []) for k in entry.get("grid", {})}


def _value(r: Any, section: str, name: str) -> Any:
    if f"{section}.{name}" not in r.config.given:
        return None
    v = r.config.get(f"{section}.{name}")
    return tuple(v) if isinstance(v, list) else v
