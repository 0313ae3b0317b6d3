"""YAML spec files to validated ``Spec`` models, with every error pointing at file:line:col.

The text is parsed once, by ``fast.fast_parse`` (libyaml's events into round-trip data, with
every key's and item's position), and validated; warnings are located from those positions.
What the fast parse declines (tags, anchors, odd keys or numbers, ...) and every spec that
fails to validate is parsed by the round-trip loader instead, whose positions the error
messages were written against. Reading and parsing the text is ``parse.py``'s and
``fast.py``'s; this module validates what it yields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ..errors import ModaliacError, SpecError, SpecErrors
from ..files import is_folder
from ..review.fit import problems as fit_problems
from ..review.fit import spec_fits
from ..review.fit import tight as fit_warnings
from ..review.fit import unchecked as fit_unchecked
from ..review.policy import check as check_policies
from ..spec.address import Address, Project, profile_environment
from ..spec.gateway import GatewaySpec
from ..spec.messages import expected_one_of, from_pydantic, key_path, located
from ..spec.service import Spec
from ..tokens import token_kind
from .fast import fast_parse
from .parse import decode, read, round_trip, round_trip_yaml

AnySpec = Spec | GatewaySpec
T = TypeVar("T")
TIGHT_FIT = "tight-fit"  # the code of a GPU fit's tight-fit warning (not a policy rule)
UNCHECKED_FIT = "context-unchecked"  # a fit without layer shapes: the context is not checked

_SECRET_HINT = (
    'specs name secrets, never hold their values: run "modal secret create NAME KEY=..." '
    "and list NAME under secrets"
)


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec and where it came from.

    ``path`` is the file as the user named it (errors say it that way); ``project_path`` is
    how plans, the state and generated headers record it: relative to the project root.
    ``spec.environment`` is resolved: the Modal environment the spec's apps live in (None:
    the workspace's default)."""

    path: str
    digest: str  # sha256 of the file's bytes
    spec: AnySpec
    env: str | None = None  # the environments: entry applied (--env), if any
    warnings: tuple[SpecError, ...] = ()  # policy warnings, located
    project_path: str = ""

    @property
    def recorded_path(self) -> str:
        return self.project_path or self.path

    def ref(self, option: str | None) -> SpecRef:
        """This spec without its model, loaded again when needed (``option``: the run's
        ``--env``, which it was loaded with)."""
        return SpecRef(self.path, self.digest, self.project_path, option, self.spec.environment)


@dataclass(frozen=True, slots=True)
class SpecRef:
    """A loaded spec without its model: enough to load it again as it was (``again``).

    A plan over thousands of specs keeps this in place of each validated model (about 11
    KiB): only reading a generated file (apply, a saved plan, diff) needs the model again.
    ``path`` is read again from where the run stands; ``option`` (the run's ``--env``) and
    ``environment`` (what the spec resolved to, the Modal profile's included) make it
    resolve the same way; ``digest`` refuses a file that changed since."""

    path: str
    digest: str
    project_path: str
    option: str | None
    environment: str | None

    @property
    def recorded_path(self) -> str:
        return self.project_path or self.path

    def again(self) -> LoadedSpec:
        """The spec loaded from its file again, refused if the file changed since."""
        try:
            loaded = load_spec(self.path, self.option, default_environment=self.environment)
        except (SpecError, SpecErrors):
            loaded = None
        if loaded is None or loaded.digest != self.digest:
            raise ModaliacError(
                f"{self.path}: the spec changed since the plan was made; plan again"
            )
        return replace(loaded, project_path=self.project_path)


class _Profile:
    """Sentinel: read the Modal profile's environment when it is needed."""


PROFILE = _Profile()


def load_spec(
    path: str | Path,
    env: str | None = None,
    *,
    project: Project | None = None,
    default_environment: str | _Profile | None = PROFILE,
) -> LoadedSpec:
    """Read, parse and validate one spec file, with environment ``env``'s overrides applied.

    Every environment's overrides are validated whichever is selected, so a broken override
    fails ``validate`` without ``--env`` too. The spec's Modal environment is then resolved,
    in this one place: ``env``'s override (its ``environment``, else ``env`` itself), else
    the spec's ``environment``, else ``default_environment`` (the Modal profile's). A spec
    without ``environments:`` goes to ``env`` itself, unless it names another environment.
    Raises SpecError / SpecErrors.
    """
    shown = str(path)
    raw = read(Path(path), shown)
    text = decode(raw, shown)
    digest = hashlib.sha256(raw).hexdigest()
    recorded = project.recorded(path) if project is not None else shown
    data = fast_parse(text, shown)
    if data is not None:
        try:
            return _loaded(data, shown, env, default_environment, digest, recorded)
        except (SpecError, SpecErrors):
            pass  # errors are worded from the round-trip parse, the one they were written for
    return _loaded(round_trip(text, shown), shown, env, default_environment, digest, recorded)


def _loaded(
    data: CommentedMap,
    shown: str,
    env: str | None,
    default: str | _Profile | None,
    digest: str,
    recorded: str,
) -> LoadedSpec:
    spec, warned, env_used, entries = _validated(data, shown, env)
    placed = _place(spec, env, env_used, default, data, shown)
    _one_address_each(data, shown, None if env else placed, entries, default)
    return LoadedSpec(shown, digest, placed, env_used, warned, recorded)


def _one_address_each(
    data: CommentedMap,
    shown: str,
    base: AnySpec | None,
    entries: list[tuple[str, AnySpec]],
    default: str | _Profile | None,
) -> None:
    """Refuse two documents of one spec at one address (one app, one identity): two
    ``environments:`` entries, or, in a run without ``--env`` (``base``: the placed base), the
    base and an entry, which would deploy one app with two sets of settings by turns."""
    seen: dict[Address, str | None] = {}
    documents: list[tuple[str | None, AnySpec]] = [(None, base)] if base is not None else []
    documents += [(name, _fallback(spec, default)) for name, spec in entries]
    for name, spec in documents:
        for app in spec.app_names():
            address = Address(spec.environment, app)
            first = seen.setdefault(address, name)
            if first == name or name is None:
                continue
            if first is None and "environment" in data:
                message = (
                    f"deploys {address}, as a run without --env does (the spec's environment is "
                    f"{spec.environment}); one app has one address: give the entry another "
                    "environment (or app), or leave environment out of the base"
                )
            elif first is None:
                message = (
                    f"deploys {address}, as a run without --env does here (MODAL_ENVIRONMENT "
                    f"or the Modal profile names {spec.environment}); one app has one address: "
                    f"pass --env {name}, or choose another environment for runs without --env"
                )
            else:
                message = (
                    f"deploys {address}, as environments.{first} does; one app has one "
                    "address: give each entry its own environment (or app)"
                )
            raise located(shown, data, ("environments", name), message, key=True)


def _has_env(data: Any, env: str | None) -> bool:
    """Whether the document has an ``environments:`` entry named ``env``."""
    environments = data.get("environments") if isinstance(data, dict) else None
    return env is not None and isinstance(environments, dict) and env in environments


def _place(
    spec: AnySpec,
    env: str | None,
    env_used: str | None,
    default: str | _Profile | None,
    data: CommentedMap,
    shown: str,
) -> AnySpec:
    """The spec with its Modal environment resolved (``env_used``: the environments: entry
    the document was merged with, which named the environment already)."""
    if env_used is None and env is not None:
        if spec.environment is None:
            return spec.model_copy(update={"environment": env})
        if spec.environment != env:
            message = (
                f"this spec deploys to environment {spec.environment!r} only, and --env names "
                f"{env!r}; add an environments: entry for {env!r}, or leave --env out"
            )
            raise located(shown, data, ("environment",), message)
    return _fallback(spec, default)


def _fallback(spec: AnySpec, default: str | _Profile | None) -> AnySpec:
    if spec.environment is not None:
        return spec
    chosen = profile_environment() if isinstance(default, _Profile) else default
    return spec if chosen is None else spec.model_copy(update={"environment": chosen})


def _documents(data: Any, env: str | None, shown: str) -> list[tuple[str | None, Any]]:
    """(None, the base) and (name, base with the override merged) for every environment."""
    found: list[tuple[str | None, Any]] = [(None, data)]
    environments = data.get("environments") if isinstance(data, dict) else None
    if _kind(data) is not Spec or not isinstance(environments, dict):
        environments = {}
    if env is not None and environments and env not in environments:
        message = f"no environment {env!r} here; this spec defines {', '.join(environments)}"
        if isinstance(data, CommentedMap):
            raise located(shown, data, ("environments",), message, key=True)
        raise SpecError(shown, message, key_path="environments")
    for name, override in environments.items():
        if isinstance(name, str) and isinstance(override, dict):
            base = {k: v for k, v in data.items() if k not in ("environments", "policy")}
            if isinstance(data, CommentedMap):
                base = _subset(data, base)
            merged = _merge(base, override)
            if "environment" not in override:
                merged["environment"] = name
            if "policy" in data:
                merged["policy"] = data["policy"]
                if isinstance(data, CommentedMap):
                    merged.lc.add_kv_line_col("policy", data.lc.data["policy"])
            found.append((name, merged))
    return found


def _subset(data: CommentedMap, keep: dict[str, Any]) -> CommentedMap:
    out = CommentedMap()
    out.lc.line, out.lc.col = data.lc.line, data.lc.col
    for key, value in keep.items():
        out[key] = value
        out.lc.add_kv_line_col(key, data.lc.data[key])
    return out


def _merge(base: Any, override: Any) -> Any:
    """``override`` deep-merged onto ``base``: mappings merge, anything else is replaced.

    Round-trip mappings keep each key's position from the side it came from, so an error in
    a merged document points at the override's line when the override set the value.
    """
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    if isinstance(base, CommentedMap):
        merged: Any = CommentedMap()
        merged.lc.line, merged.lc.col = base.lc.line, base.lc.col
    else:
        merged = {}
    for key, value in base.items():
        merged[key] = value
        if isinstance(base, CommentedMap) and key in base.lc.data:
            merged.lc.add_kv_line_col(key, base.lc.data[key])
    for key, value in override.items():
        replaced = not isinstance(value, dict) or not isinstance(merged.get(key), dict)
        merged[key] = _merge(merged.get(key), value)
        if (
            isinstance(override, CommentedMap)
            and isinstance(merged, CommentedMap)
            and (replaced or key not in merged.lc.data)
        ):
            merged.lc.add_kv_line_col(key, override.lc.data[key])
    return merged


def load_specs(
    paths: list[str | Path], env: str | None = None, project: Project | None = None
) -> list[LoadedSpec]:
    """Load several specs, reporting every broken file at once, and refuse duplicate apps
    (one address, two specs)."""
    return load_each(paths, env, project, lambda loaded: loaded)


def load_each(
    paths: list[str | Path],
    env: str | None,
    project: Project | None,
    keep: Callable[[LoadedSpec], T],
) -> list[T]:
    """What ``keep`` makes of each spec, loaded one at a time, so a run over thousands of
    specs holds what ``keep`` returns, never every model at once. As ``load_specs``: every
    broken file is reported, and a duplicate app (one address, two specs) is refused.

    Whatever goes wrong with one file, the others are still loaded and reported: a failure
    that is not the spec's (a modaliac bug) is that file's line, and the cause of the raised
    SpecErrors, so ``--debug`` shows its traceback. Once one has failed, ``keep`` is no
    longer called: nothing it makes would be used."""
    kept: list[T] = []
    errors: list[SpecError] = []
    duplicates: list[SpecError] = []
    bug: Exception | None = None
    default = profile_environment()
    seen: dict[tuple[str | None, str], str] = {}
    for path in paths:
        try:
            loaded = load_spec(path, env, project=project, default_environment=default)
        except SpecErrors as exc:
            errors.extend(exc.errors)
            continue
        except SpecError as exc:
            errors.append(exc)
            continue
        except Exception as exc:
            bug = bug or exc
            errors.append(SpecError(str(path), _bug_message(exc)))
            continue
        for app in loaded.spec.app_names():
            key = (loaded.spec.environment, app)
            if key in seen:
                message = f"app {app!r} is also defined in {seen[key]}; app names are"
                where = "app_name" if isinstance(loaded.spec, GatewaySpec) else "app"
                message += " unique per environment"
                duplicates.append(located_in_file(loaded.path, (where,), message))
            seen[key] = loaded.path
        if not errors and not duplicates:
            kept.append(keep(loaded))
    if errors or duplicates:
        raise SpecErrors(errors + duplicates) from bug
    return kept


def _bug_message(exc: Exception) -> str:
    """A failure of modaliac's own on one file, named by its type only (its text may quote
    the file, secrets and all)."""
    return (
        f"modaliac failed on this file ({type(exc).__name__}), which is a bug; please report "
        "it (--debug shows the traceback)"
    )


_KINDS = ("service", "gateway")


def _kind(data: Any) -> type[Spec] | type[GatewaySpec]:
    """The model a document is validated against: its ``kind`` (service by default)."""
    kind = data.get("kind") if isinstance(data, dict) else None
    return GatewaySpec if kind == "gateway" else Spec


def _kind_error(shown: str, data: CommentedMap) -> SpecError | None:
    """One line for a kind that is neither: the keys of a misspelt kind are not worth a
    line each, since which keys belong depends on the kind."""
    if "kind" not in data or data["kind"] in _KINDS:
        return None
    return located(shown, data, ("kind",), expected_one_of(list(_KINDS), data["kind"]))


def located_in_file(path: str, loc: tuple[str | int, ...], message: str) -> SpecError:
    """An error about a valid file at the key ``loc``, located by parsing the file again (a
    rare path: problems found across specs, after each has loaded)."""
    try:
        data = round_trip_yaml().load(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, YAMLError):  # it changed since it loaded: no line, then
        data = None
    if isinstance(data, CommentedMap) and loc[0] in data:
        return located(path, data, loc, message)
    return SpecError(path, message, key_path=key_path(loc))


def find_spec_files(target: str | Path) -> list[Path]:
    """The spec files a directory holds (``*.yaml``/``*.yml``, sorted), or the file itself.

    Hidden folders (``.github``, ``.modaliac``) are skipped: they hold CI workflows and state,
    never specs. A ``*.yaml`` is listed even when it is no regular file (a folder, a pipe, a
    dangling link): reading it then says what it is, rather than skipping it quietly."""
    target = Path(target)
    if is_folder(target) and target.suffix not in (".yaml", ".yml"):  # a *.yaml is a spec's name
        return sorted(
            p
            for p in target.rglob("*")
            if p.suffix in (".yaml", ".yml")
            and not any(part.startswith(".") for part in p.relative_to(target).parts[:-1])
        )
    return [target]


def _validated(
    data: CommentedMap, shown: str, env: str | None
) -> tuple[AnySpec, tuple[SpecError, ...], str | None, list[tuple[str, AnySpec]]]:
    """The selected document, its located warnings, the environments: entry used, and every
    entry's document."""
    tokens = _tokens(data)
    if tokens:
        raise SpecErrors([_token_error(shown, data, *token) for token in tokens])
    wrong_kind = _kind_error(shown, data)
    if wrong_kind is not None:
        raise SpecErrors([wrong_kind])
    base_errors, spec, warned = _validate(shown, data)
    if base_errors:
        raise SpecErrors(base_errors)
    errors: list[SpecError] = []
    entries: list[tuple[str, AnySpec]] = []
    selected: tuple[AnySpec | None, tuple[SpecError, ...]] = (spec, warned)
    for name, document in _documents(data, env, shown)[1:]:
        assert name is not None  # only the base has no name
        env_errors, env_spec, env_warned = _validate(shown, document)
        errors.extend(_in_environment(data, name, error) for error in env_errors)
        if env_spec is not None:
            entries.append((name, env_spec))
        if name == env:
            shown_warnings = (_in_environment(data, name, w, note=False) for w in env_warned)
            selected = (env_spec, tuple(shown_warnings))
    if errors:
        raise SpecErrors(list({str(e): e for e in errors}.values()))
    chosen, chosen_warnings = selected
    assert chosen is not None  # every document validated
    return chosen, chosen_warnings, env if _has_env(data, env) else None, entries


def _validate(
    shown: str, data: CommentedMap
) -> tuple[list[SpecError], AnySpec | None, tuple[SpecError, ...]]:
    """(errors, the spec when there are none, located policy warnings) of one document."""
    model = _kind(data)
    try:
        spec: AnySpec = model.model_validate(data)
    except ValidationError as exc:
        return from_pydantic(shown, data, exc.errors(), model), None, ()
    # GPU fit (fit.py): a model too big for its GPU is located like the spec's own problems.
    fits = spec_fits(spec)
    found = [*spec.problems(), *fit_problems(spec, fits)]
    errors = [located(shown, data, loc, message) for loc, message in found]
    tight = tuple(
        located(shown, data, loc, message, code=TIGHT_FIT)
        for loc, message in fit_warnings(spec, fits)
    ) + tuple(
        located(shown, data, loc, message, code=UNCHECKED_FIT)
        for loc, message in fit_unchecked(spec, fits)
    )
    if errors:
        return errors, spec, ()
    problems, findings = check_policies(spec)
    errors += [located(shown, data, loc, message, key=True) for loc, message in problems]
    errors += [
        located(shown, data, f.loc, f.text()) for f in findings if f.rule.severity == "error"
    ]
    warned = tuple(
        located(shown, data, f.loc, f.text(), code=f.rule.id, fix=f.rule.fix)
        for f in findings
        if f.rule.severity == "warning"
    )
    return errors, spec, tight + warned


def _in_environment(
    data: CommentedMap, name: str, error: SpecError, *, note: bool = True
) -> SpecError:
    """An error of a merged document, named by the override when it sits in its block."""
    environments = data["environments"]
    first = environments.lc.key(name)[0] + 1
    last = _last_line(environments[name]) + 1
    if error.line is not None and first <= error.line <= last:
        key = f"environments.{name}" + (f".{error.key_path}" if error.key_path else "")
        return SpecError(
            error.path,
            error.message,
            line=error.line,
            column=error.column,
            key_path=key,
            code=error.code,
            fix=error.fix,
        )
    if not note:
        return error
    return SpecError(
        error.path,
        f"with environment {name}: {error.message}",
        line=error.line,
        column=error.column,
        key_path=error.key_path,
        code=error.code,
        fix=error.fix,
    )


def _last_line(node: Any) -> int:
    """The last line (0-based) a round-trip mapping or list occupies."""
    last = getattr(getattr(node, "lc", None), "line", 0) or 0
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            last = max(last, node.lc.value(key)[0], _last_line(value))
    elif isinstance(node, CommentedSeq):
        for index, value in enumerate(node):
            last = max(last, node.lc.item(index)[0], _last_line(value))
    return last


# -- secrets -------------------------------------------------------------------------------


def _strings(data: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str, bool]]:
    """Every text in ``data``: (location, text, whether it is a mapping key)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str):
                yield (*loc, key), key, True
            yield from _strings(value, (*loc, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, (*loc, index))
    elif isinstance(data, str):
        yield loc, data, False


def _tokens(data: Any) -> list[tuple[tuple[Any, ...], str, bool]]:
    """Where ``data`` holds something shaped like a credential, and what it looks like."""
    found = []
    for loc, value, is_key in _strings(data):
        what = token_kind(value)
        if what is None and loc[:1] == ("secrets",) and not is_key and "=" in value:
            what = "a KEY=VALUE secret"
        if what is not None:
            found.append((loc, what, is_key))
    return found


def _token_error(
    shown: str, data: CommentedMap, loc: tuple[Any, ...], what: str, is_key: bool
) -> SpecError:
    """Located at the token, named by where it sits: the line never repeats the value."""
    at = located(shown, data, loc, f"this looks like {what}; {_SECRET_HINT}", key=is_key)
    if not is_key:
        return at
    return SpecError(shown, at.message, line=at.line, column=at.column, key_path=key_path(loc[:-1]))
