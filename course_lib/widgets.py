"""Interactive figures for the chapters, built on ipywidgets.

:func:`interactive_plot` turns any plotting function into controls + a figure that is
redrawn whenever a control changes; :func:`trajectory_explorer` is the one most chapters
use: optimizers on a landscape, with sliders for the learning rate, momentum, condition
number, …

Stored notebooks stay deterministic: the widgets returned here have a fixed ``repr``
(the cell's text/plain output, which nbval compares), and the figure is rendered to PNG
bytes inside an ``Image`` widget, so drawing it sends no display message at all (an
``Output`` widget would not do: under nbval its figure leaks into the cell's outputs).
Use a slider's ``continuous_update=False`` so that dragging redraws once, on release.

The figure is drawn at twice its on-screen resolution and shown at its natural size (``DPI``
CSS pixels per inch), so it is crisp on high-density screens and never stretched to the width
of the notebook.  The cell's output also carries the initial frame as a plain PNG: a notebook
opened before running (or not trusted, or read as a web page) shows that figure, where it
would otherwise show only the text ``InteractivePlot(controls: …)``.
"""
from __future__ import annotations

import base64
import html
import inspect
import io
import struct
from typing import Callable, Mapping

import ipywidgets as W
import matplotlib.pyplot as plt

from course_lib.landscapes import Landscape, run_optimizer
from course_lib.plots import plot_trajectories

__all__ = ["InteractivePlot", "interactive_plot", "trajectory_explorer"]

DPI = 80  # CSS pixels per inch of a figure on screen
_SCALE = 2  # the PNG has _SCALE × as many pixels per side, for high-density screens


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24])


def _control(name: str, spec) -> W.ValueWidget:
    """A widget as given, or one made from an ``interact``-style abbreviation:
    (min, max[, step]) → slider, list → dropdown, bool → checkbox, str → text."""
    if isinstance(spec, W.ValueWidget):
        widget = spec
    else:
        widget = W.interactive.widget_from_abbrev(spec)
        if widget is None:
            raise ValueError(f"Invalid control {name!r}: cannot make a widget from {spec!r}")
    if not widget.description:
        widget.description = name
    return widget


class InteractivePlot(W.VBox):
    """Controls above an ``Image`` that shows ``fn(**values)``'s figure.

    Attributes:
        controls: name → widget.
        image: the ``Image`` widget holding the figure as PNG.
        values: the values of the last redraw.
        result: what ``fn`` returned on the last redraw.
        figure: the figure of the last redraw (closed after display, still inspectable).
        calls: the number of redraws so far.
        error: the exception of the last change that could not be drawn, else None.
        message: an ``HTML`` line between the controls and the figure, shown only then: it names
            the error and says that the figure still shows the previous setting.  (An exception
            in a control's callback would otherwise reach only the kernel's log, and the figure
            would just not change.)  The first draw raises as usual.
    """

    def __init__(self, fn: Callable, controls: Mapping[str, W.ValueWidget]) -> None:
        self.fn = fn
        self.controls = dict(controls)
        self.image = W.Image(format="png")
        self.message = W.HTML(layout=W.Layout(display="none"))
        self.message.add_class("course-widget-error")
        self.values: dict = {}
        self.result = None
        self.figure = None
        self.error: Exception | None = None
        self.calls = 0
        super().__init__(children=[*self.controls.values(), self.message, self.image])
        for widget in self.controls.values():
            widget.observe(self.update, names="value")
        self.update()

    def update(self, change=None) -> None:
        """Call ``fn`` with the current values, show the figure it drew, close it.

        On a change (``change`` given), an exception from ``fn`` is shown in :attr:`message`
        and kept in :attr:`error`; the figure, ``values`` and ``result`` stay those of the last
        setting that drew."""
        values = {name: w.value for name, w in self.controls.items()}
        before = set(plt.get_fignums())
        try:
            result = self.fn(**values)
        except Exception as exc:
            for n in set(plt.get_fignums()) - before:
                plt.close(n)
            if change is None:
                raise
            self.error = exc
            setting = ", ".join(f"{k} = {v!r}" for k, v in values.items())
            self.message.value = (f"<b>Not drawn</b> for {html.escape(setting)}: "
                                  f"{type(exc).__name__}: {html.escape(str(exc))}. "
                                  "The figure below still shows the previous setting.")
            self.message.layout.display = None
            return
        self.values, self.result, self.error = values, result, None
        self.message.value = ""
        self.message.layout.display = "none"
        new = [plt.figure(n) for n in plt.get_fignums() if n not in before]
        if new:
            png = io.BytesIO()
            new[-1].savefig(png, format="png", dpi=DPI * _SCALE, bbox_inches="tight")
            self.image.value = png.getvalue()
            width, height = self.css_size
            # natural size: a VBox would otherwise stretch the image to the notebook's width
            self.image.layout = W.Layout(width=f"{width}px", height=f"{height}px",
                                         align_self="flex-start")
        for fig in new:
            plt.close(fig)  # closed, so the inline backend does not show it again below the cell
        self.figure = new[-1] if new else None
        self.calls += 1

    @property
    def css_size(self) -> tuple[int, int]:
        """(width, height) of the figure on screen, in CSS pixels; (0, 0) before any figure."""
        if not self.image.value:
            return 0, 0
        width, height = _png_size(bytes(self.image.value))
        return width // _SCALE, height // _SCALE

    def _repr_mimebundle_(self, **kwargs):
        """The widget, plus its current figure as a PNG for frontends that cannot show it."""
        data = super()._repr_mimebundle_(**kwargs)
        if not self.image.value:
            return data
        data["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        width, height = self.css_size
        return data, {"image/png": {"width": width, "height": height}}

    def __repr__(self) -> str:
        # The cell's text/plain output: fixed, unlike VBox's repr (ids, current values).
        return f"{type(self).__name__}(controls: {', '.join(self.controls)})"


def interactive_plot(fn: Callable, **controls) -> InteractivePlot:
    """Controls + figure: ``fn(**values)`` draws a Matplotlib figure, redrawn on every change.

    Each keyword is a widget or an ``interact`` abbreviation, e.g.
    ``interactive_plot(f, lr=W.FloatLogSlider(value=0.1, base=10, min=-3, max=0),
    steps=(10, 200, 10))``.  The initial state is drawn at once.
    """
    return InteractivePlot(fn, {name: _control(name, spec) for name, spec in controls.items()})


def _accepts(factory: Callable) -> set[str] | None:
    """Names of the keyword arguments ``factory`` accepts; None if it takes **kwargs."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def trajectory_explorer(landscape: Landscape | Callable[..., Landscape],
                        optimizers: Mapping[str, Callable], steps: int = 50, start=None,
                        title: Callable[[dict], str] | None = None,
                        **controls) -> InteractivePlot:
    """Optimizers racing on a landscape, redrawn when a control changes.

    Arguments:
        landscape: a Landscape, or a factory (e.g. ``Quadratic``) whose keyword
            arguments may be controls (``condition_number=(1, 100, 1)``).
        optimizers: label → optimizer class or factory, as for
            :func:`~course_lib.landscapes.run_optimizer`.
        steps: the number of updates, or a widget / abbreviation to make it a control.
        start: θ₀ (default ``landscape.start``).
        title: optional ``title(values) -> str`` for the figure; by default the values.
        **controls: widgets or abbreviations.  Each value goes where its name fits:
            ``steps``; a keyword of the landscape factory; otherwise a hyperparameter,
            given to every optimizer that accepts it (``momentum`` reaches SGD, not Adam).

    The returned widget's ``result`` is the dict label → Trajectory of the last redraw.
    """
    if not isinstance(steps, int):  # a widget or an abbreviation: a control like the others
        controls = {"steps": steps, **controls}
    if isinstance(landscape, Landscape):
        landscape_keys: set[str] = set()
    else:
        landscape_keys = _accepts(landscape) or set()
    accepted = {label: _accepts(opt) for label, opt in optimizers.items()}

    def draw(**values):
        n_steps = values.get("steps", steps)
        J = (landscape if isinstance(landscape, Landscape)
             else landscape(**{k: v for k, v in values.items() if k in landscape_keys}))
        hyper = {k: v for k, v in values.items() if k != "steps" and k not in landscape_keys}
        runs = {}
        for label, opt in optimizers.items():
            ok = accepted[label]
            kw = hyper if ok is None else {k: v for k, v in hyper.items() if k in ok}
            runs[label] = run_optimizer(J, opt, start, n_steps, **kw)
        fig, ax = plt.subplots(figsize=(6, 4.8))
        text = (title(values) if title is not None
                else ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}"
                               for k, v in values.items()))
        plot_trajectories(J, runs, ax=ax, title=text)
        return runs

    return interactive_plot(draw, **controls)
