"""modaliac as a Python library: load, validate, render and plan specs, as values.

The same stages the ``modaliac`` command runs, without its printing or its exit codes:

- ``load(paths)``: spec files (or folders of them) to ``LoadedSpec`` values; a broken spec
  raises the located ``SpecErrors`` the CLI prints (``path:line:col: key.path: message``);
- ``validate(paths)``: every problem as a value (``Validation``), like
  ``modaliac validate --format json``, which it prints as ``Validation.json()``;
- ``render(loaded)``: the generated Modal app files (``Rendered``) of one loaded spec;
- ``plan(paths, state)``: a ``Plan`` against a recorded state, offline (Modal is never
  asked); ``plan_json(plan)`` is the text ``modaliac plan --offline --format json`` prints.

Paths are read as the CLI reads them, from the working directory, and recorded relative to
the project root (``Project.here()``: the git top level); pass ``project`` to choose both.
The names in ``__all__`` are the public API; everything else in the package is private and
may move between releases.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from .commands import formats
from .commands.plan import build_plan, plan_inputs
from .commands.validate import report
from .errors import ModaliacError, SpecError, SpecErrors, StateError
from .loading.load import LoadedSpec, load_specs
from .plan.changes import Plan
from .plan.costs import Costing
from .plan.present import as_json
from .plan.targets import UsageError, spec_files, spec_targets, state_store
from .render.app import Rendered, render_all
from .review.cost import load_prices
from .spec.address import Project
from .state.records import State

__all__ = [
    "LoadedSpec",
    "ModaliacError",
    "Paths",
    "Plan",
    "Problem",
    "Project",
    "Rendered",
    "SpecError",
    "SpecErrors",
    "State",
    "StateError",
    "UsageError",
    "Validation",
    "load",
    "plan",
    "plan_json",
    "render",
    "validate",
]

Paths: TypeAlias = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
"""One spec file or folder, or several (a folder stands for the ``*.yaml`` files below it)."""

Problem: TypeAlias = dict[str, object]
"""One problem of ``validate``: ``severity`` (``error`` or ``warning``), ``path``, ``line``,
``column`` (1-based, or None), ``key_path``, ``message`` and ``code`` (docs/formats.md)."""


@dataclass(frozen=True)
class Validation:
    """What ``validate`` found: the files that loaded (``path`` and ``apps`` each), and
    every problem, errors and warnings, in the order ``validate --format json`` lists them."""

    files: tuple[dict[str, object], ...]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed): the exit status 0 of ``validate``."""
        return not any(found["severity"] == "error" for found in self.problems)

    def json(self) -> str:
        """The document ``modaliac validate --format json`` prints for the same specs."""
        return formats.as_json(list(self.files), list(self.problems))


def load(
    paths: Paths, *, env: str | None = None, project: Project | None = None
) -> list[LoadedSpec]:
    """Every spec ``paths`` name, validated, with ``env``'s ``environments:`` overrides
    applied (the CLI's ``--env``). Raises ``SpecErrors`` listing every located problem of
    every file (``SpecError`` for a path that holds no spec)."""
    project = project or Project.here()
    return load_specs(spec_files(_targets(paths)), env, project)


def validate(paths: Paths, *, env: str | None = None, project: Project | None = None) -> Validation:
    """Every problem of the specs ``paths`` name, as values: what ``load`` would raise, and
    the warnings a valid spec still gets (policy rules, tight GPU fits, a schema line that
    names no file, web endpoints past Modal's free tier). Spec problems are never raised."""
    files, problems = report(_targets(paths), env, project or Project.here())
    return Validation(tuple(files), tuple(problems))


def render(loaded: LoadedSpec) -> list[Rendered]:
    """The Modal app files one loaded spec yields (one for a service, one per app of a
    gateway): ``Rendered.filename`` and ``Rendered.source``, the text ``modaliac render``
    writes."""
    return render_all(loaded)


def plan(
    paths: Paths,
    state: State | str | os.PathLike[str] | None = None,
    *,
    env: str | None = None,
    replace: Sequence[str] = (),
    project: Project | None = None,
) -> Plan:
    """What applying the specs ``paths`` name would change in ``state``, planned offline.

    ``state``: a ``State``, or where one is kept (a file, or ``modal:VOLUME``, as
    ``--state``); None: ``$MODALIAC_STATE``, else the project's ``.modaliac/state.json``.
    Empty ``paths`` mean the project's ``specs/`` folder (``UsageError`` without one); a
    folder's recorded apps whose spec is gone from it are planned for deletion. ``replace``:
    addresses to redeploy even if unchanged (``--replace``)."""
    project = project or Project.here()
    targets = spec_targets(_targets(paths), project, "plan")
    asked = argparse.Namespace(  # what `plan`'s options say, for the one reader of them
        env=env, replace=list(replace), refresh_only=False, strategy=None, verify=None
    )
    inputs = plan_inputs(asked, targets, project)
    if not isinstance(state, State):
        state = state_store(None if state is None else os.fspath(state), project).read()
    return build_plan(inputs, state, project, online=False, targets=targets)


def plan_json(
    plan: Plan, *, prices: str | None = None, active_hours_per_day: float | None = None
) -> str:
    """``plan`` as JSON (docs/plan-format.md), priced like ``modaliac plan``: the bundled
    table with ``prices`` (a price file, else ``$MODALIAC_PRICES``) over it, and the usage
    estimate ``--active-hours-per-day`` gives (None: each spec's own)."""
    hours = None if active_hours_per_day is None else float(active_hours_per_day)  # 3 is 3.0
    return as_json(plan, Costing(load_prices(prices), hours))


def _targets(paths: Paths) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return [os.fspath(path) for path in paths]
