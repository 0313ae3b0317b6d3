"""What every RPC group of the local Modal API shares: the state, the environment check and
the errors Modal answers (``fail``; ``lookup``, the one look-up-or-NOT_FOUND by id)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NoReturn, TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError

if TYPE_CHECKING:
    from .state import State

T = TypeVar("T")


def fail(status: Status, message: str) -> NoReturn:
    raise GRPCError(status, message)


def lookup(objects: Mapping[str, T], kind: str, object_id: str) -> T:
    """The object of that id, else the NOT_FOUND Modal answers: "<kind> <id> not found"."""
    obj = objects.get(object_id)
    if obj is None:
        fail(Status.NOT_FOUND, f"{kind} {object_id} not found")
    return obj


class HandlerBase:
    """The state every handler group works on; ``server.Handlers`` joins the groups."""

    def __init__(self, state: State) -> None:
        self.s = state

    def _env(self, name: str) -> str:
        env = self.s.env_name(name)
        if env not in self.s.environments:
            fail(Status.NOT_FOUND, f"Environment '{env}' not found")
        return env
