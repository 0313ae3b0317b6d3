"""The workspace billing RPCs of the local Modal API, with rates and report rows a test sets.

modal 1.6.4's ``Workspace.billing`` (``modal/_workspace.py``) hydrates the workspace with
WorkspaceNameLookup, then asks WorkspaceBillingRates (a map of rate names to decimal strings,
"per unit per hour" for compute) or streams WorkspaceBillingReport items (one per object and
interval, with the tags the request named). What Modal's real rate names are is Modal's
business: tests arrange the ones they need with ``Billing.rates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from modal_proto import api_pb2

if TYPE_CHECKING:
    from google.protobuf import empty_pb2  # type: ignore[import-untyped]

    from .state import Call, State

WORKSPACE_NAME = "local-workspace"


@dataclass
class Billing:
    """What the workspace's billing answers: ``rates`` (name -> decimal string per hour),
    deprecated names, and the report's rows (see ``add_item``)."""

    rates: dict[str, str] = field(default_factory=dict)
    deprecation_warnings: dict[str, str] = field(default_factory=dict)
    items: list[api_pb2.WorkspaceBillingReportItem] = field(default_factory=list)

    def add_item(
        self,
        *,
        object_id: str,
        start: datetime,
        cost: str,
        environment: str = "main",
        description: str = "",
        tags: dict[str, str] | None = None,
        cost_by_resource: dict[str, str] | None = None,
    ) -> None:
        """One report row: what ``object_id`` cost in the interval beginning at ``start``."""
        item = api_pb2.WorkspaceBillingReportItem(
            object_id=object_id,
            description=description or object_id,
            environment_name=environment,
            cost=cost,
            tags=tags or {},
            cost_by_resource=cost_by_resource or {},
        )
        item.interval.FromDatetime(start.astimezone(UTC).replace(tzinfo=None))
        self.items.append(item)


class BillingHandlers:
    """WorkspaceNameLookup, WorkspaceBillingRates and WorkspaceBillingReport."""

    s: State

    def WorkspaceNameLookup(
        self, req: empty_pb2.Empty, call: Call
    ) -> api_pb2.WorkspaceNameLookupResponse:
        return api_pb2.WorkspaceNameLookupResponse(
            workspace_name=WORKSPACE_NAME, username=self.s.user_for(call)
        )

    def WorkspaceBillingRates(
        self, req: api_pb2.WorkspaceBillingRatesRequest, call: Call
    ) -> api_pb2.WorkspaceBillingRatesResponse:
        billing = self.s.billing
        formatted = "\n".join(f"{name}: {value}" for name, value in sorted(billing.rates.items()))
        return api_pb2.WorkspaceBillingRatesResponse(
            rates=billing.rates,
            deprecation_warnings=billing.deprecation_warnings,
            formatted=formatted,
        )

    def WorkspaceBillingReport(
        self, req: api_pb2.WorkspaceBillingReportRequest, call: Call
    ) -> list[api_pb2.WorkspaceBillingReportItem]:
        """The rows whose interval starts in [start, end), with only the tags asked for
        (``*``: all of them), as Modal's report answers."""
        start, end = req.start_timestamp.ToDatetime(), req.end_timestamp.ToDatetime()
        names = set(req.tag_names)
        answer = []
        for item in self.s.billing.items:
            if not start <= item.interval.ToDatetime() < end:
                continue
            row = api_pb2.WorkspaceBillingReportItem()
            row.CopyFrom(item)
            row.tags.clear()
            for name, value in item.tags.items():
                if "*" in names or name in names:
                    row.tags[name] = value
            answer.append(row)
        return answer
