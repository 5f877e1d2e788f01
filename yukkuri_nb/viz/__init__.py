"""Pictures of plans and runs: graphviz diagrams and matplotlib charts.

Pure functions; graphviz and matplotlib are imported only when a picture is
made, so importing this package is cheap.
"""

from .charts import (
    concurrency_chart,
    estimate_vs_actual_chart,
    gantt_chart,
    pool_utilisation_chart,
    sweep_chart,
    throughput_chart,
)
from .plan import GraphvizNotFoundError, plan_to_graphviz, render_png, render_svg

__all__ = [
    "plan_to_graphviz",
    "render_svg",
    "render_png",
    "GraphvizNotFoundError",
    "gantt_chart",
    "concurrency_chart",
    "pool_utilisation_chart",
    "throughput_chart",
    "estimate_vs_actual_chart",
    "sweep_chart",
]
