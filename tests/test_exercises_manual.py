"""The manually graded exercises (issue 8): their format, and the numbers their measurements print.

Each chapter's "predict, then measure" exercise runs a measurement with course_lib in a plain
code cell (the same in exercises/ and solutions/); its model answer and rubric rely on the
printed numbers, so they are recomputed and asserted here (nbval also compares the stored
output).  The format is CONTRIBUTING.md's "Exercises" section.
"""
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
META = {"grade": True, "solution": True, "locked": False, "task": False, "schema_version": 3}
# chapters with their manually graded part: K of their "Exercise K — Predict, then measure"
MANUAL = {"ch01": 4, "ch02": 5, "ch03": 4, "ch04": 5, "ch05": 4, "ch06": 4, "ch07": 4, "ch08": 4, "ch09": 5, "ch10": 4,
          "ch11": 4, "ch12": 5, "ch13": 4, "ch14": 4, "ch15": 3, "ch16": 3, "ch17": 3, "ch18": 3,
          "ch19": 3, "ch20": 3, "ch21": 3, "ch22": 3}


def _nb(folder, chapter):
    return nbformat.read(ROOT / folder / chapter / f"{chapter}_exercises.ipynb", as_version=4)


@pytest.mark.parametrize("chapter", sorted(MANUAL))
def test_format_of_the_manually_graded_exercises(chapter):
    k = MANUAL[chapter]
    nb = _nb("solutions", chapter)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    want = [f"ex{k}-predict", f"ex{k}-interpret", f"ex{k + 1}-written"]
    at = [ids.index(g) for g in want]
    cells = nb.cells
    assert cells[at[0] - 1].source.startswith(f"## Exercise {k} — Predict, then measure")
    assert cells[at[0] + 1].cell_type == "code" and "nbgrader" not in cells[at[0] + 1].metadata
    assert at[1] == at[0] + 2, "predict, measurement, interpret"
    assert cells[at[2] - 1].source.startswith(f"## Exercise {k + 1} — In your own words")
    total = 0
    for i in at:
        cell, meta = cells[i], cells[i].metadata["nbgrader"]
        assert cell.cell_type == "markdown" and {key: meta[key] for key in META} == META
        points = meta["points"]
        total += points
        assert re.fullmatch(r"### BEGIN SOLUTION\n(.|\n)+\n\*\*Rubric \((\d+) points?\):\*\*(.|\n)+\n### END SOLUTION",
                            cell.source), meta["grade_id"]
        assert f"**Rubric ({points} point" in cell.source, f"{meta['grade_id']}: the rubric's total is its points"
    for n, i in ((k, at[0] - 1), (k + 1, at[2] - 1)):
        title_points = int(re.search(r"\((\d+) points\)", cells[i].source).group(1))
        assert title_points == sum(cells[j].metadata["nbgrader"]["points"] for j in at
                                   if cells[j].metadata["nbgrader"]["grade_id"].startswith(f"ex{n}-"))
    # the student's version: the same measurement cell, answers to write
    released = _nb("exercises", chapter)
    assert cells[at[0] + 1].source in [c.source for c in released.cells if c.cell_type == "code"]
    for gid in want:
        cell = next(c for c in released.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)
        assert cell.source.strip() == "YOUR ANSWER HERE"


def _printed(chapter, k):
    nb = _nb("solutions", chapter)
    i = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index(f"ex{k}-predict")
    return "".join(o.get("text", "") for o in nb.cells[i + 1].outputs)


# ------------------------------------------------------------------------------ chapter 1
def test_ch01_more_data_for_the_same_capacity():
    """Exercise 4: degree 12 vs the cubic, median risk over 30 training sets, m = 20 and 200."""
    from course_lib import erm
    from course_lib.data import PolynomialRegressionTask

    task = PolynomialRegressionTask(noise_std=erm.POLY_NOISE_STD)
    small = erm.risk_vs_degree(task, n=20, degrees=(3, 12), repeats=30).median_true_risk
    large = erm.risk_vs_degree(task, n=200, degrees=(3, 12), repeats=30).median_true_risk
    # spread over the kernel sets (native, ATEN_CPU_CAPABILITY=default, avx2): < 1e-11 relative
    np.testing.assert_allclose(small, [0.11453, 363.735], rtol=1e-4)
    np.testing.assert_allclose(large, [0.095557, 0.095522], rtol=1e-4)
    sigma2 = task.bayes_risk
    assert small[1] / sigma2 > 1000 and 1 < large[1] / sigma2 < 1.07, "the model answer's claims"
    assert abs(large[1] - sigma2 * (1 + 13 / 200)) < 0.001, "excess risk ≈ σ² p/m, p = 13"
    text = _printed("ch01", 4)
    assert f"of degree 12 {small[1]:.3g}" in text and f"of degree 12 {large[1]:.3g}" in text


# ------------------------------------------------------------------------------ chapter 5
def test_ch05_a_smaller_step_near_a_saddle():
    """Exercise 4: steps near the saddle at ε = 0.1 and 0.05 (integers: the same on every
    kernel set), extra steps per factor 10 of δ, and the growth-factor law of the model answer."""
    import math

    from course_lib import saddles

    fast, slow = (saddles.escape_steps(lr=lr, max_steps=600) for lr in (0.1, 0.05))
    assert [fast.steps[i] for i in (0, 4, 8)] == [17, 68, 118]
    assert [slow.steps[i] for i in (0, 4, 8)] == [31, 128, 224]
    assert 1.8 < slow.steps[8] / fast.steps[8] < 2, "about twice as many, a little less"
    per_decade = [e.slope * math.log(10) for e in (fast, slow)]
    assert [round(x) for x in per_decade] == [13, 24]
    # the law ln 10 / ln(1 + 2ε): 12.6 and 24.2, within 0.1 of the fitted slopes
    law = [math.log(10) / math.log(1 + 2 * lr) for lr in (0.1, 0.05)]
    assert [f"{x:.3g}" for x in law] == ["12.6", "24.2"]
    assert all(abs(a - b) < 0.1 for a, b in zip(per_decade, law))
    text = _printed("ch05", 4)
    assert "17, 68, 118; 13 extra steps" in text and "31, 128, 224; 24 extra steps" in text


# ------------------------------------------------------------------------------ chapter 6
def test_ch06_a_steeper_cliff():
    """Exercise 4: the catapult census at T = 20 and T = 30: fewer catapults, a far longer
    longest step; clipped steps never longer than ε c.  Longest steps agree to < 1e-9 relative
    across the kernel sets (native, ATEN_CPU_CAPABILITY=default, avx2); counts are identical."""
    from course_lib import cliffs
    from course_lib.experiments.cliffs import RNNCliff, catapult_census, wall_slopes

    got = {}
    for T in (20, 30):
        J = RNNCliff(T)
        census = catapult_census(J, cliffs.census_starts(J), cliffs.CENSUS_LRS, cliffs.STEPS, cliffs.MAX_NORM)
        for key in ("no clipping", "clip by norm"):
            longest = max(r[3] for r in census["runs"] if r[2] == key)
            got[T, key] = (census[key]["catapulted"], census[key]["reached"], longest)
    assert [got[k][:2] for k in sorted(got)] == [(0, 13), (9, 5), (0, 14), (6, 8)]
    assert got[20, "no clipping"][2] == pytest.approx(140.5627, rel=1e-6)
    assert got[30, "no clipping"][2] == pytest.approx(5800.884, rel=1e-6)
    eps_c = max(cliffs.CENSUS_LRS) * cliffs.MAX_NORM
    assert all(got[T, "clip by norm"][2] <= eps_c * (1 + 1e-9) for T in (20, 30))
    ratio = wall_slopes([20, 30], w=cliffs.WALL_W)
    assert 55 < ratio[1] / ratio[0] < 60, "the slope on the wall: about 1.5^10 ≈ 58 times larger"
    text = _printed("ch06", 4)
    for (T, key), (n, reached, longest) in got.items():
        assert f"T = {T}, {key:12s}: {n:2d} of 16 runs catapulted, {reached:2d} reached J < 0.01, " \
               f"longest step {longest:.4g}" in text


# ------------------------------------------------------------------------------ chapter 9
def test_ch09_the_noise_floor_and_the_batch_size():
    """Exercise 5: the floor at ε = 0.01 for B = 1, 4, 16 (numpy, seeded: the same under every
    torch kernel set; rel 1e-6 leaves room for BLAS rounding), ∝ ε/B as the model answer says."""
    from course_lib import sgd_theory as st

    floor = st.noise_floor_experiment(lrs=(0.01,), batch_sizes=(1, 4, 16))
    measured, predicted = floor.measured[:, 0], floor.predicted[:, 0]
    np.testing.assert_allclose(measured, [0.0602866, 0.0140486, 0.0033989], rtol=1e-5)
    np.testing.assert_allclose(predicted, [0.0590778, 0.0140666, 0.0034753], rtol=1e-5)
    ratios = measured[0] / measured[1:]
    assert [f"{r:.2g}" for r in ratios] == ["4.3", "18"] and ratios[1] > 16
    assert predicted[0] / predicted[2] > 16, "the closed form is also a bit more than 16 times lower"
    # the small-ε slope σ² tr(Σ)/B: floor ≈ ε σ² tr(Σ)/B, within 10 % at ε = 0.01 (7 %, 2 %, 1 %)
    approx = 0.01 * floor.small_lr_slope
    assert np.all(np.abs(predicted / approx - 1) < 0.1)
    text = _printed("ch09", 5)
    assert "B = 16: noise floor at ε = 0.01 measured 0.0034 (closed form 0.0035), 18 times lower" in text


# ------------------------------------------------------------------------------ chapter 11
def test_ch11_a_later_move():
    """Exercise 4: steps to recover after the minimum moves at step 2000 or 8000 (step counts,
    identical under native, ATEN_CPU_CAPABILITY=default and avx2), and the rates behind them."""
    from course_lib import adaptive as ad
    from course_lib.experiments.adaptive import NoisyQuadratic, switch_experiment

    S, got, rate = ad.SWITCH, {}, {}
    for before in (2000, 8000):
        sw = switch_experiment(NoisyQuadratic(**S["before"]), NoisyQuadratic(**S["after"]), (before, 4000),
                               S["optimizers"], fit_from=S["fit_from"], level_from=S["level_from"], seed=ad.SEED)
        got[before] = sw["recovery"]
        rate[before] = {k: np.asarray(r.rates)[before - 1] for k, r in sw["runs"].items()}
    assert got == {2000: {"AdaGrad": 1037, "RMSProp": 283}, 8000: {"AdaGrad": 1857, "RMSProp": 249}}
    assert 1.5 < got[8000]["AdaGrad"] / got[2000]["AdaGrad"] < 2, "about twice as many, a bit less"
    assert abs(got[8000]["RMSProp"] / got[2000]["RMSProp"] - 1) < 0.2, "the same, up to the noise"
    # AdaGrad's rate at the move: about sqrt(4) = 2 times smaller; RMSProp's: the same level
    shrink = rate[2000]["AdaGrad"] / rate[8000]["AdaGrad"]
    assert np.all((1.6 < shrink) & (shrink < 2.4)), shrink
    level = rate[2000]["RMSProp"] / rate[8000]["RMSProp"]
    assert np.all(np.abs(level - 1) < 0.3), level
    text = _printed("ch11", 4)
    assert "move after 8000 steps: steps until J < 0.05 afterwards: AdaGrad 1857, RMSProp 249" in text


# ------------------------------------------------------------------------------ chapter 8
def test_ch08_ten_times_longer_on_separable_data():
    """Exercise 4: logistic regression on separable data to t = 100 000 (NumPy, float64: the
    same under every torch kernel set; checked native and avx2 to all digits)."""
    from course_lib import inexact as ix

    X, s = ix.separable_data()
    run = ix.logistic_regression_gd(X, s, steps=100_000)
    at = {t: int(np.flatnonzero(run.steps == t)[0]) for t in (10_000, 100_000)}
    np.testing.assert_allclose(run.losses[at[10_000], 0], 0.00100627, rtol=1e-5)
    np.testing.assert_allclose(run.losses[at[100_000], 0], 0.000104132, rtol=1e-5)
    np.testing.assert_allclose(run.norms[at[10_000]], [13.6921, 2.50269], rtol=1e-5)
    np.testing.assert_allclose(run.norms[at[100_000]], [21.0305, 2.50269], rtol=1e-5)
    w_hat = float(np.linalg.norm(ix.max_margin_vector(X, s)))
    growth = run.norms[at[100_000], 0] - run.norms[at[10_000], 0]
    assert abs(growth / (w_hat * np.log(10)) - 1) < 0.02, "grows by ‖ŵ‖ ln 10 per decade (7.3 vs 7.4)"
    assert 9 < run.losses[at[10_000], 0] / run.losses[at[100_000], 0] < 11, "loss ∝ 1/t"
    text = _printed("ch08", 4)
    assert "t = 100000: λ = 0: loss 0.000104, ‖w‖ 21;  λ = 0.01: ‖w‖ 2.5" in text
