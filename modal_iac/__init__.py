"""modaliac: infrastructure as code for model serving on Modal.

The public Python API is ``modal_iac.api`` (load, validate, render and plan specs, as values;
docs/api.md); the command is ``modal_iac.cli``. Every other module is a private stage of the
pipeline (spec -> loading -> render -> plan -> modal). This module stays this small: every
``modaliac`` start imports it, so it imports nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"
