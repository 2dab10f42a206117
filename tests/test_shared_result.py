"""course_lib.utils.shared_result: one computation shared by a notebook and its tests."""
import pytest
import torch

from course_lib import utils
from course_lib.utils import SHARED_RESULTS_ENV, shared_result

calls = []
SCALE = 2.0


@shared_result
def experiment(n, fn=None):
    calls.append(n)
    torch.manual_seed(n)
    return (torch.randn(n) * SCALE).sum().item()


def test_without_the_folder_every_call_computes(monkeypatch):
    monkeypatch.delenv(SHARED_RESULTS_ENV, raising=False)
    calls.clear()
    assert experiment(3) == experiment(3)
    assert calls == [3, 3]


def test_a_second_call_loads_the_result_and_the_random_state(monkeypatch, tmp_path):
    monkeypatch.setenv(SHARED_RESULTS_ENV, str(tmp_path))
    calls.clear()
    first, after_first = experiment(4), torch.rand(3)
    second, after_second = experiment(4), torch.rand(3)
    assert first == second and calls == [4]
    assert torch.equal(after_first, after_second)  # the generator is where the computation left it
    experiment(5)
    assert calls == [4, 5]


def test_constants_and_unnamed_arguments_are_part_of_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv(SHARED_RESULTS_ENV, str(tmp_path))
    calls.clear()
    base = experiment(6)
    monkeypatch.setattr(__import__(__name__), "SCALE", 3.0)
    assert experiment(6) == pytest.approx(base * 1.5)  # a new key, so computed with the new SCALE
    experiment(6, fn=lambda x: x)  # a lambda cannot be named: computed, not shared
    experiment(6, fn=lambda x: x)
    assert calls.count(6) >= 4


def test_unpicklable_results_are_returned_all_the_same(monkeypatch, tmp_path):
    monkeypatch.setenv(SHARED_RESULTS_ENV, str(tmp_path))

    @shared_result
    def local():
        return lambda: 1

    assert local()() == 1 and not list(tmp_path.iterdir())


def test_the_suite_sets_a_folder():
    import os
    assert os.environ.get(SHARED_RESULTS_ENV)
    assert utils._canonical({"a": (1, 2.5)}) == utils._canonical({"a": (1, 2.5)})


@shared_result
def draws_from_the_caller(n):
    calls.append(("draw", n))
    return torch.rand(n).sum().item()


@shared_result
def reseeds_first(n):
    calls.append(("seed", n))
    torch.manual_seed(n)
    return torch.rand(n).sum().item()


def test_a_result_that_depends_on_the_callers_random_state_is_shared_only_for_the_same_state(
        monkeypatch, tmp_path):
    monkeypatch.setenv(SHARED_RESULTS_ENV, str(tmp_path))
    calls.clear()
    torch.manual_seed(1)
    a = draws_from_the_caller(3)
    torch.manual_seed(2)
    b = draws_from_the_caller(3)  # another caller's state: computed again, and differs
    torch.manual_seed(1)
    c = draws_from_the_caller(3)  # the first caller's state: shared
    after_c = torch.rand(1)
    torch.manual_seed(1)
    torch.rand(3)
    assert a == c != b and calls.count(("draw", 3)) == 2
    assert torch.equal(after_c, torch.rand(1))


def test_a_function_that_reseeds_first_is_shared_whatever_the_callers_state(monkeypatch, tmp_path):
    monkeypatch.setenv(SHARED_RESULTS_ENV, str(tmp_path))
    calls.clear()
    torch.manual_seed(1)
    a, after_a = reseeds_first(3), torch.rand(2)
    torch.manual_seed(2)
    b, after_b = reseeds_first(3), torch.rand(2)
    assert a == b and calls.count(("seed", 3)) == 1 and torch.equal(after_a, after_b)
    assert torch.manual_seed is torch.random.manual_seed or callable(torch.manual_seed)
