"""Widgets: changing a control re-runs the callback with the new value; the repr is fixed."""
import functools

import matplotlib

matplotlib.use("Agg")
import ipywidgets as W  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.landscapes import Quadratic, Saddle, run_optimizer  # noqa: E402
from course_lib.widgets import InteractivePlot, interactive_plot, trajectory_explorer  # noqa: E402


def test_interactive_plot_redraws_on_change():
    seen = []

    def draw(a, n):
        seen.append((a, n))
        fig, ax = plt.subplots()
        ax.plot(np.arange(n), a * np.arange(n))
        ax.set_title(f"slope {a:.2f}")
        return a * n

    slider = W.FloatSlider(value=0.5, min=0.0, max=2.0, step=0.25)
    w = interactive_plot(draw, a=slider, n=(2, 10, 1))
    assert isinstance(w, W.VBox) and isinstance(w, InteractivePlot)
    assert seen == [(0.5, 6)]  # the initial state is drawn at once (IntSlider at mid-range)
    assert isinstance(w.controls["n"], W.IntSlider) and w.controls["n"].description == "n"
    assert w.children[-1] is w.image and w.children[0] is slider

    first_png = bytes(w.image.value)
    assert first_png.startswith(b"\x89PNG")  # the figure is in the Image widget
    slider.value = 1.25
    assert seen[-1] == (1.25, 6) and w.calls == 2
    assert bytes(w.image.value) != first_png
    assert w.values == {"a": 1.25, "n": 6} and w.result == 1.25 * 6
    assert w.figure.axes[0].get_title() == "slope 1.25"
    w.controls["n"].value = 3
    np.testing.assert_array_equal(w.figure.axes[0].get_lines()[0].get_ydata(), [0, 1.25, 2.5])
    assert not plt.get_fignums()  # every figure is closed after display


def test_repr_is_deterministic():
    w1 = interactive_plot(lambda lr: None, lr=W.FloatSlider(value=0.1))
    w2 = interactive_plot(lambda lr: None, lr=W.FloatSlider(value=0.7))
    assert repr(w1) == repr(w2) == "InteractivePlot(controls: lr)"
    bundle = w1._repr_mimebundle_()
    assert bundle["text/plain"] == "InteractivePlot(controls: lr)"  # no figure drawn: no PNG
    assert "image/png" not in bundle


def test_static_frame_at_natural_size():
    """The output carries the current frame as a PNG (what a notebook shows before running) and
    the image is shown at its natural size, drawn at twice the resolution."""
    import base64

    from course_lib.widgets import DPI

    def draw(a):
        plt.subplots(figsize=(5, 3))[1].plot([0, a])
    w = interactive_plot(draw, a=W.FloatSlider(value=1.0))
    data, metadata = w._repr_mimebundle_()
    assert data["text/plain"] == "InteractivePlot(controls: a)"
    assert "application/vnd.jupyter.widget-view+json" in data
    png = base64.b64decode(data["image/png"])
    assert png == bytes(w.image.value) and png.startswith(b"\x89PNG")
    width, height = w.css_size
    assert metadata == {"image/png": {"width": width, "height": height}}
    assert 0.8 * 5 * DPI < width <= 5 * DPI and 0.8 * 3 * DPI < height <= 3 * DPI  # tight bbox
    assert w.image.layout.width == f"{width}px" and w.image.layout.align_self == "flex-start"
    w.controls["a"].value = 2.0  # a redraw updates the frame
    assert base64.b64decode(w._repr_mimebundle_()[0]["image/png"]) != png


def test_invalid_control():
    with pytest.raises(ValueError, match="Invalid control 'x'"):
        interactive_plot(lambda x: None, x=object())


def test_trajectory_explorer_routes_controls():
    lr = W.FloatSlider(value=0.1, min=0.01, max=0.5, step=0.01)
    momentum = W.FloatSlider(value=0.0, min=0.0, max=0.9, step=0.1)
    kappa = W.FloatSlider(value=10.0, min=1.0, max=50.0, step=1.0)
    optimizers = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam}
    w = trajectory_explorer(Quadratic, optimizers, steps=15, lr=lr, momentum=momentum,
                            condition_number=kappa)

    def expected(opt, kappa, **hyper):
        return run_optimizer(Quadratic(condition_number=kappa), opt, steps=15, **hyper).path

    np.testing.assert_allclose(w.result["SGD"].path, expected(torch.optim.SGD, 10, lr=0.1))

    lr.value = 0.05
    momentum.value = 0.5
    kappa.value = 20.0
    assert w.calls == 4
    np.testing.assert_allclose(w.result["SGD"].path,
                               expected(torch.optim.SGD, 20, lr=0.05, momentum=0.5))
    # Adam does not take `momentum`: it gets lr only
    np.testing.assert_allclose(w.result["Adam"].path, expected(torch.optim.Adam, 20, lr=0.05))
    title = w.figure.axes[0].get_title()
    assert title == "lr = 0.05, momentum = 0.5, condition_number = 20"
    assert [t.get_text() for t in w.figure.axes[0].get_legend().get_texts()][-2:] == [
        "SGD", "Adam"]


def test_trajectory_explorer_with_a_fixed_landscape_and_steps_control():
    J = Saddle()
    w = trajectory_explorer(J, {"GD": functools.partial(torch.optim.SGD, lr=0.1)},
                            steps=W.IntSlider(value=5, min=1, max=40),
                            title=lambda v: f"{v['steps']} steps of gradient descent")
    assert w.result["GD"].steps == 5
    w.controls["steps"].value = 12
    assert w.result["GD"].steps == 12
    np.testing.assert_allclose(w.result["GD"].path,
                               run_optimizer(J, torch.optim.SGD, steps=12, lr=0.1).path)
    assert w.figure.axes[0].get_title() == "12 steps of gradient descent"


def test_a_setting_that_fails_says_so_and_keeps_the_figure():
    """A control moved to a value the drawing function rejects: the widget names the error
    (a callback's exception would otherwise reach only the kernel's log) and keeps the last
    figure; a good value draws again and hides the message."""
    def draw(lr):
        fig, ax = plt.subplots()
        if lr > 1:
            raise ValueError(f"Invalid learning rate: {lr} (must be at most 1)")
        ax.plot([0, lr])
        return lr

    slider = W.FloatSlider(value=0.5, min=0.0, max=2.0)
    w = interactive_plot(draw, lr=slider)
    png = bytes(w.image.value)
    assert w.message.layout.display == "none" and w.error is None
    slider.value = 1.5
    assert isinstance(w.error, ValueError) and w.message.layout.display is None
    assert "Not drawn" in w.message.value and "lr = 1.5" in w.message.value
    assert "ValueError: Invalid learning rate: 1.5 (must be at most 1)" in w.message.value
    assert bytes(w.image.value) == png and w.values == {"lr": 0.5} and w.result == 0.5
    assert not plt.get_fignums(), "the failed draw's figure is closed"
    slider.value = 0.25
    assert w.error is None and w.message.layout.display == "none" and w.message.value == ""
    assert bytes(w.image.value) != png and w.result == 0.25
    with pytest.raises(ValueError, match="Invalid learning rate"):  # the first draw raises
        interactive_plot(draw, lr=W.FloatSlider(value=1.5, min=0.0, max=2.0))
    assert not plt.get_fignums()
