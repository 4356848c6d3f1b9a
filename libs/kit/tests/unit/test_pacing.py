from flotilla_kit.pacing import Pace


def test_idle_passes_slow_down_to_the_rest_interval_and_work_brings_it_back() -> None:
    pace = Pace(1.0, at_rest_s=8.0)
    assert [pace.after(found_work=False) for _ in range(5)] == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert pace.after(found_work=True) == 1.0
    assert pace.after(found_work=False) == 2.0


def test_a_loop_slower_than_the_rest_interval_keeps_its_own() -> None:
    pace = Pace(30.0, at_rest_s=8.0)
    assert pace.after(found_work=False) == 30.0
