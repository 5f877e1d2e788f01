"""Measurement protocol: alternating runs, medians, ratios, targets."""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Result:
    """One workload's outcome: per-contender samples, derived metrics and target checks."""

    workload: str
    title: str
    unit: str = "s"
    samples: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def median(self, contender: str) -> float:
        return statistics.median(self.samples[contender])

    def target(self, name: str, value: float, limit: float, *, at_most: bool = True, fmt: str = "{:.3g}") -> None:
        met = value <= limit if at_most else value >= limit
        self.targets.append(
            {"name": name, "value": value, "limit": limit, "at_most": at_most, "met": bool(met),
             "text": f"{fmt.format(value)} {'<=' if at_most else '>='} {fmt.format(limit)}"}
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload, "title": self.title, "unit": self.unit,
            "samples": self.samples,
            "medians": {c: statistics.median(s) for c, s in self.samples.items() if s},
            "metrics": self.metrics, "targets": self.targets, "notes": self.notes,
        }


def alternate(contenders: dict[str, Callable[[], float]], runs: int) -> dict[str, list[float]]:
    """Run every contender ``runs`` times, interleaved (the order rotates each round), after a GC."""
    names = list(contenders)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(runs):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            gc.collect()
            samples[name].append(contenders[name]())
    return samples
