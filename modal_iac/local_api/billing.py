"""The workspace billing RPCs of the local Modal API, with rates and report rows a test sets.

modal 1.6.4's ``Workspace.billing`` (``modal/_workspace.py``) hydrates the workspace with
WorkspaceNameLookup, then asks WorkspaceBillingRates (a map of rate names to decimal strings,
"per unit per hour" for compute) or streams WorkspaceBillingReport items (one per object and
interval, with the tags the request named). What Modal's real rate names are is Modal's
business: tests arrange the ones they need with ``State.billing`` (``Billing`` in state.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modal_proto import api_pb2

from .base import HandlerBase

if TYPE_CHECKING:
    from google.protobuf import empty_pb2  # type: ignore[import-untyped]

    from .state import Call

WORKSPACE_NAME = "local-workspace"


class BillingHandlers(HandlerBase):
    """WorkspaceNameLookup, WorkspaceBillingRates and WorkspaceBillingReport."""

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
