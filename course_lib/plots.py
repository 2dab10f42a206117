"""Figures the chapters share: contours with trajectories, loss curves, animations.

Every function draws on ``ax`` if given (so figures compose with ``plt.subplots``), else on
a new figure, and returns the Axes (``animate_trajectories`` returns the animation).
Nothing here calls ``plt.show()``.

Animations in notebooks: display them with :func:`animation_player`.  It is an ipywidgets
player (Play, a frame slider and the frames, linked in the browser, so Play works at the first
click without a round trip to the kernel), and its stored output also carries the animation as
an animated GIF: a notebook opened before running, not trusted, offline or read as a web page
shows the animation playing, without scripts or outside assets.  (:func:`to_jshtml` is
Matplotlib's JavaScript player with a deterministic id; its scripts and buttons do not run in an
untrusted notebook and its icons come from a CDN, so chapters do not use it.)
"""
from __future__ import annotations

import hashlib
import re
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.colors import LogNorm

from course_lib.landscapes import Landscape, Trajectory

__all__ = ["contour", "plot_trajectories", "plot_losses", "plot_history",
           "animate_trajectories", "animation_player", "AnimationPlayer", "to_jshtml",
           "surface3d"]

#: marker and legend label for each kind of critical point
CRITICAL_STYLE = {
    "global minimum": dict(marker="*", s=220, color="gold", edgecolor="black", zorder=5),
    "local minimum": dict(marker="P", s=120, color="white", edgecolor="black", zorder=5),
    "saddle": dict(marker="X", s=120, color="tab:red", edgecolor="black", zorder=5),
}
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]


def _axes(ax, **kwargs):
    if ax is None:
        _, ax = plt.subplots(**kwargs)
    return ax


def _path(traj) -> np.ndarray:
    """An (N, n) array of iterates from a Trajectory or anything array-like."""
    return np.asarray(traj.path if isinstance(traj, Trajectory) else traj, dtype=float)


def _levels(Z: np.ndarray, floor: float, n: int, log: bool) -> np.ndarray:
    """n contour levels for Z; log-spaced in Z − floor (floor = the global minimum)."""
    if not log:
        return np.linspace(Z.min(), Z.max(), n)
    excess = Z - floor
    positive = excess[excess > 0]
    lo = max(positive.min(), positive.max() * 1e-10) if positive.size else 1e-12
    return floor + np.geomspace(lo, excess.max(), n)


def contour(landscape: Landscape, ax=None, levels: int = 30, log_levels: bool = True,
            bounds=None, filled: bool = True, resolution: int = 200,
            critical_points: bool = True):
    """Contours of J over ``bounds`` (default ``landscape.bounds``), marking its known
    critical points: ★ global minima, ✚ local minima, ✖ saddles.

    ``log_levels`` spaces the levels geometrically in J − J* (J* = ``landscape.min_value``),
    which resolves narrow valleys such as Rosenbrock's; with ``filled`` the colours follow
    the same (log) scale.
    """
    ax = _axes(ax, figsize=(5.5, 4.5))
    bounds = bounds if bounds is not None else landscape.bounds
    X, Y, Z = landscape.mesh(resolution, bounds)
    lv = _levels(Z, landscape.min_value, levels, log_levels)
    if filled:
        if log_levels:
            # colour by J − J* on a log scale (shift so every level is positive)
            shift = landscape.min_value
            ax.contourf(X, Y, Z - shift, levels=lv - shift, cmap="viridis",
                        norm=LogNorm(vmin=lv[0] - shift, vmax=lv[-1] - shift), extend="both")
        else:
            ax.contourf(X, Y, Z, levels=lv, cmap="viridis", extend="both")
    ax.contour(X, Y, Z, levels=lv, colors="white" if filled else None,
               linewidths=0.5, alpha=0.6 if filled else 1.0)
    if critical_points:
        for kind, pts in landscape.critical_points.items():
            pts = pts.numpy()
            inside = ((pts[:, 0] >= bounds[0][0]) & (pts[:, 0] <= bounds[0][1])
                      & (pts[:, 1] >= bounds[1][0]) & (pts[:, 1] <= bounds[1][1]))
            if inside.any():
                ax.scatter(pts[inside, 0], pts[inside, 1], label=kind, **CRITICAL_STYLE[kind])
    ax.set_xlim(*bounds[0])
    ax.set_ylim(*bounds[1])
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_title(landscape.name)
    return ax


def _draw_path(ax, i: int, label: str, traj):
    """Draw path number i: the line (with sparse markers), a hollow start, a filled end.
    Returns the three Line2D objects (the animation moves them)."""
    path = _path(traj)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color, marker = colors[i % len(colors)], _MARKERS[i % len(_MARKERS)]
    if isinstance(traj, Trajectory) and traj.diverged:
        label = f"{label} (diverged)"
    (line,) = ax.plot(path[:, 0], path[:, 1], color=color, lw=1.5, marker=marker, ms=3,
                      markevery=max(1, len(path) // 25), label=label, zorder=3)
    (start,) = ax.plot(*path[0, :2], "o", ms=8, mfc="none", mec=color, mew=2, zorder=4)
    (end,) = ax.plot(*path[-1, :2], marker, ms=9, color=color, mec="black", zorder=4)
    return line, start, end


def plot_trajectories(landscape: Landscape, trajectories: Mapping, ax=None,
                      title: str | None = None, contour_kw: dict | None = None,
                      legend: bool = True):
    """Contours of ``landscape`` with one path per entry of ``trajectories``.

    ``trajectories`` maps a label to a :class:`~course_lib.landscapes.Trajectory` or an
    (N, 2) array of iterates.  Each path gets its own colour and marker; its start is a
    hollow circle, its end a filled marker; a diverged run says so in the legend.  The
    window stays at the landscape's bounds, so a path that leaves it is cut at the edge.
    """
    ax = contour(landscape, ax=ax, **(contour_kw or {}))
    for i, (label, traj) in enumerate(trajectories.items()):
        _draw_path(ax, i, label, traj)
    if title is not None:
        ax.set_title(title)
    if legend:
        ax.legend(loc="best", fontsize="small", framealpha=0.8)
    return ax


def _values(curve, min_value: float) -> np.ndarray:
    vals = curve.losses if isinstance(curve, Trajectory) else curve
    return np.asarray(vals, dtype=float) - min_value


def plot_losses(curves: Mapping, ax=None, log_y: bool = True, x_label: str = "step",
                y_label: str | None = None, min_value: float = 0.0,
                title: str | None = None):
    """One curve per entry of ``curves`` (label → Trajectory or 1-D array of losses).

    ``min_value`` (J*) is subtracted first, so on a landscape ``plot_losses(...,
    min_value=J.min_value)`` plots the suboptimality J(θ_t) − J* on a log scale
    (the y label says so).
    """
    ax = _axes(ax, figsize=(5.5, 4))
    for label, curve in curves.items():
        vals = _values(curve, min_value)
        if isinstance(curve, Trajectory) and curve.diverged:
            label = f"{label} (diverged)"
        ax.plot(np.arange(len(vals)), vals, label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    if y_label is None:
        y_label = r"$J(\theta) - J^*$" if min_value != 0.0 else "loss"
    ax.set_ylabel(y_label)
    if title is not None:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


_PRETTY = {"loss": "training loss (minibatch)", "grad_norm": "gradient norm ‖g‖",
           "lr": "learning rate ε", "train_loss": "training loss", "val_loss": "validation loss",
           "train_accuracy": "training accuracy", "val_accuracy": "validation accuracy"}


def plot_history(history, keys=("loss",), per: str = "step", ax=None, log_y: bool = False,
                 title: str | None = None, label_prefix: str = ""):
    """Curves from a ``course_lib.train.History`` (duck-typed).

    ``per="step"`` reads ``history.steps`` (keys ``step``, ``epoch``, ``loss``,
    ``grad_norm``, ``lr``), ``per="epoch"`` reads ``history.epochs`` (keys ``epoch``,
    ``step``, ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``); each is a
    dict of equal-length lists.  Entries that are None or NaN (e.g. no validation set) are
    skipped.  ``label_prefix`` helps when several runs share one Axes.
    """
    if per not in ("step", "epoch"):
        raise ValueError(f"Invalid per: {per!r} (expected 'step' or 'epoch')")
    table = history.steps if per == "step" else history.epochs
    ax = _axes(ax, figsize=(5.5, 4))
    x_all = np.asarray(table[per], dtype=float)
    for key in keys:
        if key not in table:
            raise KeyError(f"History has no {per} key {key!r}; it has {sorted(table)}")
        y = np.array([np.nan if v is None else float(v) for v in table[key]])
        keep = np.isfinite(y)
        ax.plot(x_all[keep], y[keep], label=label_prefix + _PRETTY.get(key, key),
                marker="o" if per == "epoch" else None, ms=3)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(per)
    ax.set_ylabel(_PRETTY.get(keys[0], keys[0]) if len(keys) == 1 else "value")
    if title is not None:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def animate_trajectories(landscape: Landscape, trajectories: Mapping, interval: int = 100,
                         frames: int | None = None, title: str | None = None,
                         figsize=(5, 4), dpi: int = 72) -> FuncAnimation:
    """A ``FuncAnimation`` of the paths growing step by step over the contour plot.

    Frame f shows iterates 0 … f of every path (a shorter path stays at its end).
    ``frames`` defaults to the longest path; if it is smaller, the frames sample the steps
    evenly (the last frame always shows the whole paths).  The figure is closed right away
    so that a notebook does not also show it as a still image; display the result with
    :func:`to_jshtml`.
    """
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi)
    contour(landscape, ax=ax)
    paths = {label: _path(traj) for label, traj in trajectories.items()}
    drawn = [_draw_path(ax, i, label, traj)
             for i, (label, traj) in enumerate(trajectories.items())]
    lines, ends = [d[0] for d in drawn], [d[2] for d in drawn]
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small", framealpha=0.8)
    longest = max(len(p) for p in paths.values())
    n_frames = longest if frames is None else min(frames, longest)
    steps = np.unique(np.linspace(0, longest - 1, n_frames).round().astype(int))

    def draw(t):
        for line, end, path in zip(lines, ends, paths.values()):
            upto = path[: t + 1]
            line.set_data(upto[:, 0], upto[:, 1])
            end.set_data([upto[-1, 0]], [upto[-1, 1]])
        return lines + ends

    anim = FuncAnimation(fig, draw, frames=steps, interval=interval, blit=False)
    plt.close(fig)
    return anim


def _frames(anim: FuncAnimation, dpi: float) -> list[bytes]:
    """Every frame of ``anim`` as PNG bytes, through Matplotlib's movie-writer interface."""
    import io

    from matplotlib.animation import AbstractMovieWriter

    class Collect(AbstractMovieWriter):
        def __init__(self):
            super().__init__(fps=5)
            self.pngs: list[bytes] = []

        def setup(self, fig, outfile, dpi=None):
            super().setup(fig, outfile, dpi)

        def grab_frame(self, **savefig_kwargs):
            buf = io.BytesIO()
            self.fig.savefig(buf, format="png", dpi=self.dpi)
            self.pngs.append(buf.getvalue())

        def finish(self):
            pass

    writer = Collect()
    anim.save("frames", writer=writer, dpi=dpi)  # no file is written: the writer keeps them
    return writer.pngs


def _gif(pngs: list[bytes], size: tuple[int, int], interval_ms: int) -> bytes:
    """An animated GIF (looping) of the frames, scaled to ``size``; deterministic bytes."""
    import io

    from PIL import Image

    rgb = []
    for png in pngs:
        with Image.open(io.BytesIO(png)) as im:
            rgb.append(im.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    # one palette for all frames (from the last, fullest one): unchanged pixels stay unchanged,
    # so the GIF stores only what each frame adds
    palette = rgb[-1].quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=0)
    images = [im.quantize(palette=palette, dither=0) for im in rgb]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=interval_ms, loop=0, disposal=1, optimize=False)
    return buf.getvalue()


class AnimationPlayer:
    """Play / frame slider / frames, linked in the browser (see :func:`animation_player`).

    Attributes:
        widget: the ipywidgets ``VBox`` (CSS class ``course-animation``).
        play, slider: the ``Play`` and ``IntSlider`` widgets (their ``value`` is the frame).
        stack: a ``Stack`` of ``Image`` widgets, one per frame, showing the selected one.
        links: the two browser-side links, Play → slider → shown frame.
        gif: the animated GIF stored as the output's fallback.
        css_size: (width, height) of a frame on screen, in CSS pixels.
    """

    SCALE = 2  # frames hold 2 × as many pixels per side as they take CSS pixels

    def __init__(self, anim: FuncAnimation) -> None:
        import ipywidgets as W

        from course_lib.widgets import _png_size

        fig = anim._fig
        pngs = _frames(anim, dpi=fig.dpi * self.SCALE)
        width, height = _png_size(pngs[0])
        self.css_size = (width // self.SCALE, height // self.SCALE)
        interval = int(getattr(anim, "_interval", 200))
        self.gif = _gif(pngs, self.css_size, interval)
        n = len(pngs)
        self.play = W.Play(value=0, min=0, max=n - 1, interval=interval, description="Play")
        self.slider = W.IntSlider(value=0, min=0, max=n - 1, description="frame",
                                  continuous_update=True)
        layout = dict(width=f"{self.css_size[0]}px", height=f"{self.css_size[1]}px")
        self.stack = W.Stack([W.Image(value=png, format="png", layout=W.Layout(**layout))
                              for png in pngs], selected_index=0)
        self.links = [W.jslink((self.play, "value"), (self.slider, "value")),
                      W.jslink((self.slider, "value"), (self.stack, "selected_index"))]
        self.widget = W.VBox([W.HBox([self.play, self.slider]), self.stack],
                             layout=W.Layout(align_items="flex-start"))
        self.widget.add_class("course-animation")

    def _repr_mimebundle_(self, **kwargs):
        import base64

        data = self.widget._repr_mimebundle_(**kwargs)
        data["image/gif"] = base64.b64encode(self.gif).decode("ascii")
        data["text/plain"] = repr(self)
        width, height = self.css_size
        return data, {"image/gif": {"width": width, "height": height}}

    def __repr__(self) -> str:
        return f"AnimationPlayer(frames: {len(self.stack.children)})"


def animation_player(anim: FuncAnimation) -> AnimationPlayer:
    """The animation as a player that works offline, before running and untrusted.

    After running: Play, a frame slider and the frames as ``Image`` widgets, linked in the
    browser (``jslink``), so playing needs no kernel round trip.  In the stored notebook (and
    wherever widgets cannot show: an unrun or untrusted notebook, a web page): the same frames
    as a looping animated GIF, deterministic for the same data, Matplotlib and Pillow.  Frames
    are drawn at 2× resolution and shown at their natural size.
    """
    return AnimationPlayer(anim)


def to_jshtml(anim: FuncAnimation, default_mode: str = "once", frame_format: str = "jpeg"):
    """The animation as an ``IPython.display.HTML`` player whose text is deterministic.

    ``anim.to_jshtml()`` names its HTML elements with ``uuid4().hex``, so a re-executed
    notebook would store a different text/html output each time (nbval compares it).  We
    replace that id by ``jshtml_`` + 16 hex digits of a SHA-1 of the rest of the HTML:
    identical animations get identical output, different ones different ids.

    The frames are embedded as base64 images rendered by Agg and encoded by Pillow:
    identical for identical data on the same Matplotlib and Pillow versions.  ``"jpeg"``
    frames are about 4× smaller than ``"png"`` ones (≈ 17 kB against 70 kB for a 5 × 4 inch
    contour plot at 72 dpi), which matters for notebooks kept in git.
    """
    from IPython.display import HTML

    with plt.rc_context({"animation.frame_format": frame_format}):
        html = anim.to_jshtml(default_mode=default_mode)
    found = re.search(r'id="_anim_img([0-9a-f]{32})"', html)
    if found is None:
        raise RuntimeError("Matplotlib's jshtml no longer has the expected _anim_img<uuid> id")
    random_id = found.group(1)
    digest = hashlib.sha1(html.replace(random_id, "").encode()).hexdigest()[:16]
    return HTML(html.replace(random_id, f"jshtml_{digest}"))


def surface3d(landscape: Landscape, ax=None, bounds=None, resolution: int = 60,
              zlim: tuple[float, float] | None = None, critical_points: bool = True):
    """A 3-D surface of J with its known critical points marked.

    ``ax`` must be a 3-D Axes (``fig.add_subplot(projection="3d")``); by default one is
    made.  ``zlim`` clips the view for functions with steep walls.
    """
    if ax is None:
        fig = plt.figure(figsize=(6, 4.5))
        ax = fig.add_subplot(projection="3d")
    bounds = bounds if bounds is not None else landscape.bounds
    X, Y, Z = landscape.mesh(resolution, bounds)
    if zlim is not None:
        Z = np.clip(Z, *zlim)
    ax.plot_surface(X, Y, Z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.85)
    if critical_points:
        for kind, pts in landscape.critical_points.items():
            if len(pts):
                z = landscape(pts).numpy()
                style = CRITICAL_STYLE[kind]
                ax.scatter(pts[:, 0].numpy(), pts[:, 1].numpy(), z, marker=style["marker"],
                           s=style["s"], color=style["color"], edgecolor="black",
                           label=kind, depthshade=False)
        if any(len(p) for p in landscape.critical_points.values()):
            ax.legend(fontsize="small")
    if zlim is not None:
        ax.set_zlim(*zlim)
    ax.set_xlabel(r"$\theta_1$")
    ax.set_ylabel(r"$\theta_2$")
    ax.set_zlabel(r"$J(\theta)$")
    ax.set_title(landscape.name)
    return ax
