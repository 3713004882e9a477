from __future__ import annotations

import pytest

from services.execution.ids import close_volume

STEP = {"step": 0.01, "min_volume": 0.01}


@pytest.mark.parametrize(
    ("remaining", "fraction", "expected"),
    [
        (0.3, 0.5, 0.15),  # exact on the step
        (0.25, 0.5, 0.13),  # 0.125 rounds half up to the step
        (0.33, 1 / 3, 0.11),  # float noise does not move it off the step
        (1.0, 0.25, 0.25),
        (0.1, 0.01, 0.01),  # below the minimum: raised to it
        (0.02, 0.5, 0.01),  # leaves exactly the minimum open: a valid partial close
    ],
)
def test_close_volume_when_fraction_then_rounded_to_step(
    remaining: float, fraction: float, expected: float
) -> None:
    assert close_volume(remaining, fraction, **STEP) == expected


def test_close_volume_when_no_fraction_or_whole_then_full_close() -> None:
    assert close_volume(0.5, None, **STEP) is None
    assert close_volume(0.5, 1.0, **STEP) is None


def test_close_volume_when_remnant_below_minimum_then_full_close() -> None:
    # 0.95 of 0.1 rounds to 0.10: nothing would remain
    assert close_volume(0.1, 0.95, **STEP) is None
    # a 0.1 step and 0.1 minimum: half of 0.15 rounds to 0.1 and would leave 0.05
    assert close_volume(0.15, 0.5, step=0.1, min_volume=0.1) is None


def test_close_volume_when_coarse_step_then_rounded_on_that_step() -> None:
    assert close_volume(2.0, 0.3, step=0.5, min_volume=0.5) == 0.5
    assert close_volume(2.0, 0.4, step=0.5, min_volume=0.5) == 1.0


@pytest.mark.parametrize("fraction", [0.0, -0.5])
def test_close_volume_when_fraction_not_positive_then_error(fraction: float) -> None:
    with pytest.raises(ValueError, match="close fraction"):
        close_volume(0.3, fraction, **STEP)
