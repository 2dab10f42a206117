"""Animations that work offline and before running (course_lib.plots.animation_player)."""
import base64
import io
import json

import torch
from PIL import Image

from course_lib import plots
from course_lib.landscapes import Quadratic, run_optimizer


def _anim(lr=0.1, frames=5):
    J = Quadratic(condition_number=10)
    runs = {"SGD": run_optimizer(J, torch.optim.SGD, steps=12, lr=lr)}
    return plots.animate_trajectories(J, runs, frames=frames, interval=150,
                                      figsize=(2.5, 2), dpi=50)


def test_player_links_play_slider_and_frames_in_the_browser():
    player = plots.animation_player(_anim())
    n = len(player.stack.children)
    assert n == 5 and player.play.max == player.slider.max == n - 1
    assert player.play.interval == 150
    assert all(type(link).__name__ == "Link" for link in player.links)  # jslink, not a kernel link
    pairs = {((l.source[0].model_id, l.source[1]), (l.target[0].model_id, l.target[1]))
             for l in player.links}
    assert ((player.play.model_id, "value"), (player.slider.model_id, "value")) in pairs
    assert ((player.slider.model_id, "value"), (player.stack.model_id, "selected_index")) in pairs
    frames = [bytes(im.value) for im in player.stack.children]
    assert len(set(frames)) == n, "every frame differs (the paths grow)"
    assert "course-animation" in player.widget._dom_classes


def test_stored_output_is_a_looping_gif_without_scripts_or_outside_assets():
    player = plots.animation_player(_anim())
    data, meta = player._repr_mimebundle_()
    assert set(data) == {"application/vnd.jupyter.widget-view+json", "image/gif", "text/plain"}
    assert data["text/plain"] == "AnimationPlayer(frames: 5)"
    gif = Image.open(io.BytesIO(base64.b64decode(data["image/gif"])))
    assert gif.format == "GIF" and gif.n_frames == 5 and gif.info["loop"] == 0
    assert gif.info["duration"] == 150
    assert gif.size == player.css_size == (meta["image/gif"]["width"], meta["image/gif"]["height"])
    width, height = player.css_size  # frames at 2x, shown at their natural size
    from course_lib.widgets import _png_size
    assert _png_size(bytes(player.stack.children[0].value)) == (2 * width, 2 * height)
    text = json.dumps({k: v for k, v in data.items() if k != "image/gif"})
    assert "<script" not in text and "http" not in text


def test_stored_gif_is_deterministic():
    a, b = plots.animation_player(_anim()), plots.animation_player(_anim())
    assert a.gif == b.gif
    assert plots.animation_player(_anim(lr=0.05)).gif != a.gif
