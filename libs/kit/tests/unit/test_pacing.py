import pytest

from flotilla_kit.pacing import Pace, full_jitter


def test_idle_passes_slow_down_to_the_rest_interval_and_work_brings_it_back() -> None:
    pace = Pace(1.0, at_rest_s=8.0)
    assert [pace.after(found_work=False) for _ in range(5)] == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert pace.after(found_work=True) == 1.0
    assert pace.after(found_work=False) == 2.0


def test_a_loop_slower_than_the_rest_interval_keeps_its_own() -> None:
    pace = Pace(30.0, at_rest_s=8.0)
    assert pace.after(found_work=False) == 30.0


def test_full_jitter_stays_under_an_exponential_ceiling() -> None:
    ceilings = [full_jitter(n, initial_s=0.1, max_s=5, draw=1.0) for n in range(10)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5, 5, 5])
    assert full_jitter(3, initial_s=0.1, max_s=5, draw=0.0) == 0
    assert full_jitter(3, initial_s=0.1, max_s=5, draw=0.5) == pytest.approx(0.4)
    assert full_jitter(10_000, initial_s=0.1, max_s=5, draw=1.0) == 5  # no overflow
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match=r"draw must be in \[0, 1\]"):
            full_jitter(0, initial_s=0.1, max_s=5, draw=bad)
    with pytest.raises(ValueError, match="attempt must not be negative"):
        full_jitter(-1, initial_s=0.1, max_s=5, draw=0.5)
