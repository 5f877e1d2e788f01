"""yukkuri_nb — a Jupyter-first async workflow engine for ゆっくり動画.

The engine lives in :mod:`yukkuri_nb.core` (standard library + pydantic).
The notebook layer (:mod:`yukkuri_nb.notebook`), analysis
(:mod:`yukkuri_nb.analysis`), diagrams and charts (:mod:`yukkuri_nb.viz`) and
the video pipeline (:mod:`yukkuri_nb.pipeline`) are imported on demand.
"""

from .core import *  # noqa: F401,F403 - the public API
from .core import __all__ as _core_all

__all__ = list(_core_all)
__version__ = "0.1.0"
