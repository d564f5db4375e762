"""The interleaved timing the docs/studies/*_check.py scripts share (sr_edge.backends.timing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sr_edge.backends import timing


def test_interleaved_medians_take_turns_and_report_each_calls_median(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    order: list[str] = []

    def call(name: str, costs: list[float]) -> Callable[[], None]:
        def fn() -> None:
            order.append(name)
            clock[0] += costs.pop(0)

        return fn

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    # two rounds of (one untimed + three timed) calls each; costs in seconds
    fast = call("fast", [9.0, 0.001, 0.002, 0.003, 9.0, 0.001, 0.001, 0.001])
    slow = call("slow", [9.0, 0.010, 0.020, 0.030, 9.0, 0.040, 0.040, 0.040])
    medians = timing.interleaved_medians({"fast": fast, "slow": slow}, rounds=2, runs=3)
    assert order == ["fast"] * 4 + ["slow"] * 4 + ["fast"] * 4 + ["slow"] * 4
    assert medians["fast"] == pytest.approx(1.5)  # rounds' medians 2 and 1 ms; the untimed 9 s calls never count
    assert medians["slow"] == pytest.approx(30.0)  # rounds' medians 20 and 40 ms
