"""The interleaved timing the docs/studies/*_check.py scripts share (sr_edge.backends.timing)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
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


def test_stream_rate_runs_every_frame_once_after_a_warm_up() -> None:
    from sr_edge.bench.timing import measure_stream
    from sr_edge.errors import SrEdgeError

    seen: list[np.ndarray] = []
    frame = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    fps = measure_stream(seen.append, frame, 5)
    assert fps > 0 and len(seen) == 6  # one warm-up, then the stream
    assert all(np.array_equal(f, frame) for f in seen) and all(f is not frame for f in seen[1:])  # fresh copies
    with pytest.raises(SrEdgeError, match="at least one frame"):
        measure_stream(seen.append, frame, 0)
