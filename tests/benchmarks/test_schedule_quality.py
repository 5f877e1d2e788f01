"""Schedule quality on F's instances (benchmarks/spec.py), pinned on the virtual clock: no timing involved."""

from __future__ import annotations

import pytest

from benchmarks import contenders as C
from benchmarks import spec
from yukkuri_nb.core import VirtualClock


def test_makespan_schedule_follows_whichever_order_the_estimates_say_finishes_first():
    for seed in (3, 17, 177):  # 177: priorities cost 10% against FIFO under "priority"
        w = spec.random_dag(seed)
        spans = {}
        for kind in ("priority", "critical-path", "fifo", "makespan"):
            clock = VirtualClock()
            engine = C.build_engine(w, processor=C.sleeper, clock=clock)
            result = clock.run(engine.execute_workflow("bench", "p", schedule=kind))
            assert result.is_successful
            spans[kind] = result.execution_time_seconds
            if kind == "makespan":
                chosen = engine.events("p")[0].data["schedule"]
        assert spans["makespan"] == pytest.approx(min(spans["priority"], spans["critical-path"], spans["fifo"]))
        assert spans["makespan"] == pytest.approx(spans[chosen])
        assert spans["makespan"] <= C.list_schedule(w) + 1e-6  # never behind FIFO list scheduling
    assert chosen != "priority"  # seed 177 is one where the priorities cost time
