"""A local Modal API: the real ``modal`` client deploys against it with no network.

Test infrastructure and a demo. It speaks Modal's own gRPC protocol (``modal_proto``) with
in-memory state, records every request, and injects faults on demand. Importing it imports
the Modal SDK, so nothing else in ``modal_iac`` imports it.

    with LocalModalServer() as api:
        api.state.add_secret("huggingface", ("HF_TOKEN",))
        os.environ.update(api.env())   # MODAL_SERVER_URL, MODAL_TOKEN_ID, MODAL_TOKEN_SECRET
        ...  # modal deploy, modal.runner.deploy_app, modal.Function.from_name(...)
        api.state.requests("FunctionCreate")
"""

from __future__ import annotations

from .faults import Fault, Faults
from .server import LocalModalServer, LocalModalServicer, reset_modal_client, wait_for_port
from .state import Call, State

__all__ = [
    "Call",
    "Fault",
    "Faults",
    "LocalModalServer",
    "LocalModalServicer",
    "State",
    "reset_modal_client",
    "wait_for_port",
]
