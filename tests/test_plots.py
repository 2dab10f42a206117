"""Figures: what is drawn is the data given (paths, levels, critical points, curves)."""
import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402

from course_lib import plots  # noqa: E402
from course_lib.landscapes import (Quadratic, Rosenbrock, Saddle, Trajectory,  # noqa: E402
                                   newton_path, run_optimizer)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def scatter_by_label(ax):
    return {c.get_label(): c for c in ax.collections if not isinstance(c, ContourSet)}


def test_contour_log_levels_and_critical_points():
    J = Saddle()
    ax = plots.contour(J, levels=12, resolution=60)
    cs = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(cs) == 2  # filled + lines
    levels = cs[1].levels
    ratios = np.diff(np.log(levels - J.min_value))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # geometric in J − J*
    _, _, Z = J.mesh(60)
    assert levels[-1] == pytest.approx(Z.max())
    marks = scatter_by_label(ax)
    np.testing.assert_allclose(marks["global minimum"].get_offsets(), J.minimizers.numpy())
    np.testing.assert_allclose(marks["saddle"].get_offsets(), J.saddles.numpy())
    assert ax.get_xlim() == J.bounds[0] and ax.get_ylim() == J.bounds[1]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == J.name


def test_contour_linear_levels_and_custom_window():
    J = Rosenbrock()
    fig, ax = plt.subplots()
    out = plots.contour(J, ax=ax, levels=9, log_levels=False, filled=False,
                        bounds=((0.5, 1.5), (0.5, 1.5)), resolution=40)
    assert out is ax
    (cs,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    _, _, Z = J.mesh(40, ((0.5, 1.5), (0.5, 1.5)))
    np.testing.assert_allclose(cs.levels, np.linspace(Z.min(), Z.max(), 9))
    assert ax.get_xlim() == (0.5, 1.5)


def test_plot_trajectories_draws_each_path():
    J = Saddle()
    runs = {"Newton": newton_path(J, steps=6),
            "saddle-free Newton": newton_path(J, steps=6, saddle_free=True),
            "array": np.array([[1.0, 1.0], [0.5, 0.5], [0.0, 1.0]])}
    ax = plots.plot_trajectories(J, runs, title="Newton is attracted to the saddle")
    assert ax.get_title() == "Newton is attracted to the saddle"
    lines = [l for l in ax.get_lines()]
    assert len(lines) == 3 * len(runs)  # path, start, end
    for i, (label, run) in enumerate(runs.items()):
        path = run.path if isinstance(run, Trajectory) else run
        line, start, end = lines[3 * i: 3 * i + 3]
        assert line.get_label() == label
        np.testing.assert_array_equal(np.column_stack(line.get_data()), path)
        np.testing.assert_array_equal(np.ravel(start.get_data()), path[0])
        np.testing.assert_array_equal(np.ravel(end.get_data()), path[-1])
    assert len({l.get_color() for l in lines[0::3]}) == 3  # distinct colours
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"Newton", "saddle-free Newton", "array", "global minimum", "saddle"} <= set(legend)


def test_diverged_runs_are_labelled():
    J = Quadratic()
    bad = run_optimizer(J, torch.optim.SGD, steps=300, lr=0.25)
    assert bad.diverged
    ax = plots.plot_trajectories(J, {"SGD": bad})
    assert "SGD (diverged)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_losses():
    J = Saddle()
    runs = {"GD": run_optimizer(J, torch.optim.SGD, steps=20, lr=0.1),
            "raw": np.array([3.0, 2.0, 1.5])}
    ax = plots.plot_losses(runs, min_value=J.min_value, title="suboptimality")
    lines = ax.get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), runs["GD"].losses - J.min_value)
    np.testing.assert_array_equal(lines[0].get_xdata(), np.arange(21))
    np.testing.assert_allclose(lines[1].get_ydata(), [4.0, 3.0, 2.5])
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step"
    assert ax.get_ylabel() == r"$J(\theta) - J^*$"
    ax = plots.plot_losses({"a": [1.0, 0.5]}, log_y=False, x_label="iteration")
    assert ax.get_yscale() == "linear" and ax.get_ylabel() == "loss"
    assert ax.get_xlabel() == "iteration"


def fake_history():
    """The shape of course_lib.train.History: two dicts of equal-length lists."""
    return SimpleNamespace(
        steps={"step": [1, 2, 3, 4], "epoch": [0, 0, 1, 1], "loss": [2.0, 1.5, 1.2, 1.0],
               "grad_norm": [5.0, 4.0, 3.0, 2.0], "lr": [0.1, 0.1, 0.05, 0.05]},
        epochs={"epoch": [0, 1, 2], "step": [2, 4, 6], "train_loss": [1.5, 1.0, 0.8],
                "train_accuracy": [0.5, 0.7, 0.8], "val_loss": [None, 1.1, 0.9],
                "val_accuracy": [None, 0.6, float("nan")]},
    )


def test_plot_history_per_step_and_per_epoch():
    h = fake_history()
    ax = plots.plot_history(h, keys=("loss", "grad_norm"), log_y=True)
    (loss, gn) = ax.get_lines()
    np.testing.assert_array_equal(loss.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(gn.get_ydata(), [5.0, 4.0, 3.0, 2.0])
    assert ax.get_xlabel() == "step" and ax.get_yscale() == "log"

    ax = plots.plot_history(h, keys=("train_loss", "val_loss"), per="epoch")
    train, val = ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(val.get_xdata(), [1, 2])  # None skipped
    np.testing.assert_array_equal(val.get_ydata(), [1.1, 0.9])
    assert ax.get_xlabel() == "epoch"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training loss",
                                                                  "validation loss"]
    ax = plots.plot_history(h, keys=("val_accuracy",), per="epoch")
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [1])  # NaN skipped too


def test_plot_history_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Invalid per"):
        plots.plot_history(fake_history(), per="batch")
    with pytest.raises(KeyError, match="no epoch key 'loss'"):
        plots.plot_history(fake_history(), keys=("loss",), per="epoch")


def small_animation(lr=0.1, frames=4):
    J = Quadratic(condition_number=5)
    runs = {"GD": run_optimizer(J, torch.optim.SGD, steps=8, lr=lr),
            "short": np.array([[1.0, -1.0], [0.5, -0.5]])}
    return J, runs, plots.animate_trajectories(J, runs, frames=frames, figsize=(2.5, 2),
                                               dpi=40)


def test_animation_frames_show_the_growing_paths():
    J, runs, anim = small_animation(frames=4)
    assert isinstance(anim, FuncAnimation)
    frames = list(anim.new_frame_seq())
    assert frames == [0, 3, 5, 8]  # evenly spaced steps, the last one included
    ax = anim._fig.axes[0]
    path_lines = [l for l in ax.get_lines() if l.get_label() in runs]
    for t in frames:
        anim._func(t)  # draw frame t
        for line, run in zip(path_lines, runs.values()):
            path = run.path if isinstance(run, Trajectory) else run
            np.testing.assert_array_equal(np.column_stack(line.get_data()), path[: t + 1])
    assert not plt.get_fignums()  # closed: no extra still image under the cell
    anim._draw_was_started = True  # drawn by hand above; silence "deleted without rendering"


def test_to_jshtml_is_deterministic():
    _, _, anim1 = small_animation()
    _, _, anim2 = small_animation()
    html1, html2 = plots.to_jshtml(anim1).data, plots.to_jshtml(anim2).data
    assert html1 == html2
    raw = anim2.to_jshtml()  # Matplotlib's own output carries a random uuid4 id
    assert re.search(r'_anim_img[0-9a-f]{32}"', raw) and not re.search(
        r'_anim_img[0-9a-f]{32}"', html1)
    (player_id,) = set(re.findall(r'id="_anim_img(jshtml_[0-9a-f]{16})"', html1))
    assert html1.count(player_id) == raw.count(re.search(r"_anim_img([0-9a-f]{32})",
                                                         raw).group(1))
    assert html1.count("data:image/jpeg;base64,") == 4
    # a different animation gets a different id
    _, _, anim3 = small_animation(lr=0.05)
    assert player_id not in plots.to_jshtml(anim3).data


def test_surface3d_marks_critical_points_on_the_surface():
    J = Saddle()
    ax = plots.surface3d(J, resolution=20, zlim=(-1.5, 4))
    assert ax.name == "3d" and ax.get_zlim() == (-1.5, 4)
    marks = {c.get_label(): c for c in ax.collections if c.get_label() in J.critical_points}
    xs, ys, zs = marks["saddle"]._offsets3d
    np.testing.assert_allclose(np.column_stack([xs, ys]), J.saddles.numpy())
    np.testing.assert_allclose(zs, [0.0])
    xs, ys, zs = marks["global minimum"]._offsets3d
    np.testing.assert_allclose(zs, [J.min_value] * 2)
    assert ax.get_zlabel() == r"$J(\theta)$"
