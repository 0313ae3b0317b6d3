"""Observing reads each deployed app's id and state from one AppList per environment instead
of a lookup and a lifecycle read per app, and observes the same as the lookups would."""

from __future__ import annotations

from collections import Counter

import pytest
from modal_proto import api_pb2

from modal_iac.local_api import LocalModalServer
from modal_iac.local_api.state import App, new_id
from modal_iac.modal import observe as modal_api

DEPLOYED = [f"app-{i}" for i in range(6)]


def arrange(api: LocalModalServer) -> list[modal_api.Query]:
    """Deployed apps (none by modaliac), one per environment under a shared name, a stopped
    app, a name held by a stopped and a starting app but deployed by none, and a missing app."""
    state = api.state
    state.add_environment("staging")
    for name in DEPLOYED:
        state.foreign_deploy(name)
    state.foreign_deploy("shared", environment="staging")
    state.foreign_deploy("gone")
    state.apps[state.app("gone").app_id].state = api_pb2.APP_STATE_STOPPED
    for name in ("gone", "half"):  # same names in other states: never taken as deployed
        app = App(new_id("ap"), name, "main", api_pb2.APP_STATE_INITIALIZING, 1.0, "someone")
        state.apps[app.app_id] = app
    state.add_container("app-0")
    names = [*DEPLOYED, "shared", "gone", "half", "never"]
    return [modal_api.Query(name, None) for name in names] + [modal_api.Query("shared", "staging")]


def test_observe_reads_fewer_rpcs_an_app_and_observes_the_same(
    modal_api: LocalModalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modal_iac.modal import observe as observing

    queries = arrange(modal_api)
    modal_api.state.clear_calls()
    listed = observing.observe(queries).apps
    reads = Counter(modal_api.state.rpc_names())

    # The old way, for comparison: every app looked up by name, its state read on its own.
    monkeypatch.setattr(observing, "_deployed_by_name", lambda items: {})
    modal_api.state.clear_calls()
    looked_up = observing.observe(queries).apps
    old_reads = Counter(modal_api.state.rpc_names())

    assert listed == looked_up
    assert {key: o.state for key, o in listed.items()} == {
        **{(None, name): "deployed" for name in DEPLOYED},
        (None, "shared"): "missing",  # deployed in staging only
        ("staging", "shared"): "deployed",
        (None, "gone"): "stopped",
        (None, "half"): "missing",
        (None, "never"): "missing",
    }
    assert listed[None, "app-0"].containers == 1
    staging = modal_api.state.app("shared", "staging").app_id
    assert listed["staging", "shared"].app_id == staging

    # A deployed app costs its history, tags and layout (these apps have no functions):
    # no lookup and no lifecycle read. Apps the listing does not show deployed are looked up.
    assert reads["AppGetByDeploymentName"] == 4  # shared (main), gone, half, never
    assert reads["AppGetLifecycle"] == 0
    assert reads["AppList"] == 2  # one per environment
    assert per_deployed_app(reads) == 3
    assert per_deployed_app(old_reads) == 5  # what a lookup and a lifecycle read added
    assert old_reads["AppGetByDeploymentName"] == len(queries)


def per_deployed_app(reads: Counter[str]) -> float:
    """Reads per deployed app: all but the connection's hello, the workspace's name, the
    listings and the lookups that find no deployed app (the four names not deployed here)."""
    shared = reads["ClientHello"] + reads["WorkspaceNameLookup"] + reads["AppList"] + 4
    return (sum(reads.values()) - shared) / (len(DEPLOYED) + 1)


def test_a_name_the_listing_shows_deployed_twice_is_settled_by_the_lookup(
    modal_api: LocalModalServer,
) -> None:
    """Modal moves a name to the newest deploy; should a listing ever show two deployed apps
    under one name, the lookup by name decides which is observed, not the listing's order."""
    from modal_iac.modal import observe as observing

    modal_api.state.foreign_deploy("twin")
    first = modal_api.state.app("twin")
    second = App(new_id("ap"), "twin", "main", api_pb2.APP_STATE_DEPLOYED, 2.0, "someone")
    modal_api.state.apps = {second.app_id: second, **modal_api.state.apps}
    modal_api.state.clear_calls()

    found = observing.observe([observing.Query("twin", None)]).apps[None, "twin"]

    assert modal_api.state.rpc_names().count("AppGetByDeploymentName") == 1
    assert found.app_id == modal_api.state.deployed_app("twin").app_id  # type: ignore[union-attr]
    assert found.app_id in {first.app_id, second.app_id}
