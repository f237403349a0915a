"""Training curves with matplotlib (the ``graphdl[plot]`` extra), drawn off screen (Agg backend) to PNG or SVG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from graphdl.errors import VizError
from graphdl.train import History

_SKIP = {"epoch", "lr", "skipped_batches"}


def _figure() -> Any:
    """matplotlib's Figure class: a figure not attached to pyplot renders with the Agg canvas, off screen,
    whatever the user's interactive backend."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise VizError("plots need matplotlib: pip install 'graphdl[plot]'") from None
    return Figure


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise VizError(f"cannot tell the picture format of '{path}'; end it in .png, .svg or .pdf")
    import matplotlib

    try:
        with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text (searchable, parseable)
            fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as e:
        raise VizError(f"cannot write '{path}': {e.strerror or e}") from None


def history(hist: History | str | os.PathLike[str], path: str | os.PathLike[str],
            keys: Sequence[str] | None = None) -> list[str]:
    """Draw one panel per value (the objective first, then monitors and metrics), training against
    validation (``val_`` prefix) per epoch; returns the panels' names. ``hist`` is a History or a file
    written by ``History.save``; ``keys`` picks the panels (default: every value)."""
    if not isinstance(hist, History):
        hist = History.load(hist)
    if not hist.epochs:
        raise VizError("the history has no epochs to draw")
    names = [k for k in hist.keys() if k not in _SKIP and not k.startswith("val_")]
    names += [k[4:] for k in hist.keys() if k.startswith("val_") and k[4:] not in names]
    if hist.objective in names:
        names.remove(hist.objective)
        names.insert(0, hist.objective)
    if keys is not None:
        missing = [k for k in keys if hist._key(k) not in names]
        if missing:
            raise VizError(f"the history has no {missing}; it has {names}")
        names = [hist._key(k) for k in keys]
    figure = _figure()
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = figure(figsize=(4.2 * cols, 3.2 * rows))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for key, label, style in ((name, "train", "-o"), ("val_" + name, "validation", "-s")):
            points = [(e["epoch"], e[key]) for e in hist.epochs if key in e]
            if points:
                ax.plot(*zip(*points), style, markersize=3, label=label)
        title = name + (" (objective)" if name == hist.objective else "")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return names


def lr_sweep(lrs: Sequence[float], losses: Sequence[float], path: str | os.PathLike[str],
             suggestion: float | None = None) -> None:
    """Loss against learning rate on a log axis (what ``LearningRateFinder.plot`` draws)."""
    if not lrs:
        raise VizError("no learning-rate sweep recorded; run the finder first")
    fig = _figure()(figsize=(5.5, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(lrs, losses, "-")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    if suggestion is not None:
        ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"steepest descent: {suggestion:.2g}")
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    _save(fig, path)
