"""What apply does once a verified app is deployed: check it, and undo it when it fails.

A failed check rolls the app back to the version Modal served before (Modal's app rollback)
and waits until that version answers; a new app (nothing served before) is stopped, or kept
with ``--keep-failed``. Every step is recorded as it happens, so the state always says what
Modal runs: the rolled-back app at the version the rollback made, with the code it serves
again; a stopped app not at all; an app whose rollback failed at the failing version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..plan.changes import Change, has_previous
from ..state.records import AppRecord
from .endpoints import ProbeError
from .halt import Halt
from .outcome import Outcome
from .tags import app_tags
from .verify import NotVerifiable, Target, check, preflight

if TYPE_CHECKING:
    from .deploy import DeployResult


def unverifiable(changes: list[Change]) -> dict[str, tuple[Change, str]]:
    """The changes whose check this machine cannot send (an API key or a proxy token is not
    set here), with why: they are not deployed, since nothing could tell whether they work."""
    found: dict[str, tuple[Change, str]] = {}
    for change in changes:
        if change.verify is None or change.record is None:
            continue
        try:
            preflight(Target(change.app, change.environment, change.record.settings))
        except NotVerifiable as exc:
            found[change.address] = (change, f"not deployed: {exc}")
    return found


@dataclass
class Gate:
    """One deployed app's check and, when it fails, its rollback or stop."""

    change: Change
    result: DeployResult
    before: AppRecord | None  # the state's record before this apply
    save: Callable[[str, AppRecord | None], str]
    halt: Halt
    on_event: Callable[[str, str], None]

    @property
    def deployed(self) -> str:
        return f"deployed v{self.result.version} in {self.result.seconds:.1f}s"

    def outcome(self, status: str, detail: str) -> Outcome:
        self.on_event(self.change.address, "verified" if status == "ok" else status)
        return Outcome(self.change.address, self.change.action, status, detail)

    def run(self, keep_failed: bool) -> Outcome:
        change = self.change
        assert change.verify is not None and change.record is not None
        if self.halt:
            return self.outcome(
                "cancelled",
                f"{self.deployed}; not verified ({self.halt.reason}); the state records "
                f"v{self.result.version}",
            )
        self.on_event(change.address, "verifying")
        target = Target(change.app, change.environment, change.record.settings)
        try:
            answered = check(target, change.verify)
        except ProbeError as exc:
            failed = f"{self.deployed}, but verification failed: {exc}"
        else:
            return self.outcome("ok", f"{self.deployed}, verified: {answered}")
        if not has_previous(change):
            return self._new_app_failed(failed, keep_failed)
        if self.result.version == change.observed_version:
            return self.outcome(
                "failed",
                f"{failed}; Modal runs the version that served before (nothing new was "
                "published), so there is nothing to roll back",
            )
        return self._roll_back(failed)

    def _new_app_failed(self, failed: str, keep_failed: bool) -> Outcome:
        from .changes import stop
        from .sdk import ModalApiError

        change, version = self.change, self.result.version
        if keep_failed:
            note = f"v{version} failed verification; kept running (--keep-failed)"
            problem = self._record(replace(self._record_now(), last_apply=note))
            return self.outcome(
                "failed", f"{failed}; kept running (--keep-failed), recorded at v{version}{problem}"
            )
        self.on_event(change.address, "stopping")
        try:
            stop(change.app, change.environment, halt=self.halt)
        except ModalApiError as exc:
            return self.outcome(
                "failed",
                f"{failed}; stopping it failed too: {exc}; it still runs and the state records "
                f"v{version}",
            )
        # A renamed app's record stays: the app at its old address still runs.
        before = self.before if self.before is not None and self.before.renamed_from else None
        problem = self._record(before)
        return self.outcome("failed", f"{failed}; stopped it (no version served before){problem}")

    def _roll_back(self, failed: str) -> Outcome:
        from .changes import rollback
        from .sdk import ModalApiError

        change = self.change
        to = change.observed_version if change.observed_version is not None else -1
        self.on_event(change.address, "rolling back")
        try:
            version = rollback(change.app, change.environment, to)
        except ModalApiError as exc:
            note = f"v{self.result.version} failed verification; the rollback failed: {exc}"
            problem = self._record(replace(self._record_now(), last_apply=note))
            return self.outcome(
                "failed",
                f"{failed}; the rollback failed too: {exc}; Modal still runs "
                f"v{self.result.version}, as the state records{problem}",
            )
        served = f"v{to}" if to != -1 else "the previous version"
        note = (
            f"v{self.result.version} failed verification; rolled back to {served} (now v{version})"
        )
        back = self.before
        if back is not None:
            record = replace(back, deployed_version=version, last_apply=note)
            tags = self._retag(record)
        else:  # Modal ran an app the state did not record: the state forgets this one again
            record, tags = None, ""
        problem = self._record(record)
        recorded = "the state records it" if record is not None else "the state forgets the app"
        rolled = f"{failed}; rolled back to {served}, now v{version} ({recorded}){tags}{problem}"
        self.on_event(change.address, "verifying")
        settings = (back or self._record_now()).settings
        target = Target(change.app, change.environment, settings)
        assert change.verify is not None
        try:
            check(target, change.verify)
        except ProbeError as exc:
            return self.outcome("failed", f"{rolled}; it does not answer either: {exc}")
        return self.outcome("failed", f"{rolled}, which answers")

    def _record_now(self) -> AppRecord:
        assert self.change.record is not None
        return replace(
            self.change.record,
            deployed_version=self.result.version,
            renamed_from=self.change.renamed_from,
        )

    def _record(self, record: AppRecord | None) -> str:
        """Write what Modal runs now; an empty string, or why the state could not say it."""
        problem = self.save(self.change.address, record)
        return f"; but the state does not record it ({problem})" if problem else ""

    def _retag(self, record: AppRecord) -> str:
        """Give the rolled-back app the tags of the code it serves again."""
        from .changes import set_tags
        from .sdk import ModalApiError

        try:
            set_tags(self.change.app, self.change.environment, app_tags(record))
        except ModalApiError as exc:
            return f" (its tags still name the failed version: {exc})"
        return ""
