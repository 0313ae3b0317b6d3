"""modaliac: infrastructure as code for model serving on Modal.

The public surface is small: load specs, render them, plan against recorded state.
Everything else is a pipeline stage module (load -> render -> plan -> ...).
"""

from __future__ import annotations

__version__ = "0.1.0"
