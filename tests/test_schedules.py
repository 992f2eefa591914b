"""trainrun.builders.schedules: the YAML epoch -> learning-rate functions (no Keras)."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import pytest

from trainrun.builders import schedules
from trainrun.builders.schedules import SCHEDULES, Constant, Cosine, Exponential, Piecewise, Step


def test_importing_schedules_imports_no_keras():
    """precheck reads SCHEDULES before TensorFlow: the builders package must not import Keras."""
    code = "import sys, trainrun.builders.schedules; print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_piecewise_boundary_is_the_first_epoch_of_the_next_value():
    f = Piecewise(boundaries=[2, 4], values=[1.0, 0.5, 0.1])
    assert [f(e, 9.0) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"boundaries": [2], "values": [1.0]}, "one more value than boundaries"),
        ({"boundaries": [4, 2], "values": [1.0, 0.5, 0.1]}, "must be increasing"),
    ],
)
def test_piecewise_refuses_what_cannot_be_a_schedule(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Piecewise(**kwargs)


def test_exponential_smooth_and_staircase():
    smooth = Exponential(initial=1.0, rate=0.5, every=2)
    assert smooth(1, 0.0) == pytest.approx(0.5**0.5)
    stair = Exponential(initial=1.0, rate=0.5, every=2, staircase=True)
    assert [stair(e, 0.0) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_initial_left_out_is_the_optimizers_rate_at_the_first_call():
    f = Step(factor=0.5, every=1)
    assert f(0, 0.01) == 0.01
    assert f(1, 0.005) == pytest.approx(0.005)  # from 0.01 on, not from the rate it is given
    assert f.initial == 0.01


def test_cosine_warmup_then_decay_to_alpha():
    f = Cosine(initial=1.0, epochs=4, alpha=0.1, warmup=2)
    assert f(0, 0.0) == pytest.approx(0.5)
    assert f(1, 0.0) == pytest.approx(1.0)
    assert f(2, 0.0) == pytest.approx(1.0)
    assert f(4, 0.0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert f(6, 0.0) == pytest.approx(0.1)
    assert f(60, 0.0) == pytest.approx(0.1)


def test_constant_and_every_schedule_pickles():
    assert Constant(value=0.3)(7, 1.0) == 0.3
    built = {
        "piecewise": Piecewise(boundaries=[1], values=[1.0, 0.5]),
        "exponential": Exponential(),
        "step": Step(),
        "cosine": Cosine(),
        "constant": Constant(value=1.0),
    }
    assert set(built) == set(SCHEDULES)
    for name, f in built.items():
        assert isinstance(f, SCHEDULES[name])
        again = pickle.loads(pickle.dumps(f))
        assert again(3, 0.2) == f(3, 0.2), name


def test_unknown_schedule_suggests_or_lists_them():
    near = schedules.unknown_schedule("piecewize", path="callbacks[0].x.schedule.piecewize")
    assert str(near) == (
        "callbacks[0].x.schedule.piecewize: unknown schedule 'piecewize'; did you mean 'piecewise'?"
    )
    far = schedules.unknown_schedule("zzz")
    assert str(far) == f"unknown schedule 'zzz'; known: {', '.join(SCHEDULES)}"
