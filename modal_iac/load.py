"""YAML spec files to validated ``Spec`` models, with every error pointing at file:line:col.

Two paths, one result. The fast path parses with ruamel's C safe loader (when
``ruamel.yaml.clib`` is installed) and validates; it is taken only for text that holds no
anchor, alias or tag characters. Anything it cannot accept is parsed again with the
round-trip loader, which keeps positions, refuses tags and alias bombs, and produces the
located errors. Valid specs never pay for positions; invalid ones always get them.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import SpecError, SpecErrors
from .spec import Spec

MAX_SPEC_BYTES = 256 * 1024
MAX_EXPANDED_NODES = 20_000
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")
}
# Prefixes of real credentials. Secret NAMES such as "hf-token" do not match: each pattern
# needs the long random tail a token has.
_TOKEN_PATTERNS = [
    (re.compile(r"^hf_[A-Za-z0-9]{20,}$"), "a Hugging Face token"),
    (re.compile(r"^sk-[A-Za-z0-9_-]{16,}$"), "an API key (sk-...)"),
    (re.compile(r"^(sk|rk|pk)_(live|test)_[A-Za-z0-9]{16,}$"), "an API key"),
    (re.compile(r"^(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}$|^github_pat_\w{20,}$"), "a GitHub token"),
    (re.compile(r"^(ak|as)-[A-Za-z0-9]{16,}$"), "a Modal token"),
    (re.compile(r"^xox[abprs]-[A-Za-z0-9-]{10,}$"), "a Slack token"),
    (re.compile(r"^AKIA[0-9A-Z]{16}$"), "an AWS access key"),
    (re.compile(r"^eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."), "a JSON web token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
]
_SECRET_HINT = (
    'specs name secrets, never hold their values: run "modal secret create NAME KEY=..." '
    "and list NAME under secrets"
)


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec and where it came from."""

    path: str
    digest: str  # sha256 of the file's bytes
    spec: Spec


def load_spec(path: str | Path) -> LoadedSpec:
    """Read, parse and validate one spec file. Raises SpecError / SpecErrors."""
    shown = str(path)
    raw = _read(Path(path), shown)
    text = _decode(raw, shown)
    digest = hashlib.sha256(raw).hexdigest()
    data = _fast_parse(text)
    if data is not None:
        try:
            spec = Spec.model_validate(data)
        except ValidationError:
            pass
        else:
            if not spec.problems() and not _first_token(data):
                return LoadedSpec(shown, digest, spec)
    return LoadedSpec(shown, digest, _slow_load(text, shown))


def load_specs(paths: list[str | Path]) -> list[LoadedSpec]:
    """Load several specs, reporting every broken file at once, and refuse duplicate apps."""
    loaded, errors = [], []
    for path in paths:
        try:
            loaded.append(load_spec(path))
        except SpecErrors as exc:
            errors.extend(exc.errors)
        except SpecError as exc:
            errors.append(exc)
    seen: dict[tuple[str | None, str], str] = {}
    for item in loaded:
        key = (item.spec.environment, item.spec.app)
        if key in seen:
            errors.append(
                SpecError(
                    item.path,
                    f"app {item.spec.app!r} is also defined in {seen[key]}; app names are unique "
                    "per environment",
                    key_path="app",
                )
            )
        seen[key] = item.path
    if errors:
        raise SpecErrors(errors)
    return loaded


def find_spec_files(target: str | Path) -> list[Path]:
    """The spec files a directory holds (``*.yaml``/``*.yml``, sorted), or the file itself."""
    target = Path(target)
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [target]


# -- reading -------------------------------------------------------------------------------


def _read(path: Path, shown: str) -> bytes:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise SpecError(shown, "is a directory, not a spec file")
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                shown, f"file is {size} bytes; specs are limited to {MAX_SPEC_BYTES // 1024} KiB"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise SpecError(shown, "no such file") from None
    except PermissionError:
        raise SpecError(shown, "permission denied") from None


def _decode(raw: bytes, shown: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(
            shown, "is not UTF-8 text; save the file as UTF-8", line=line, column=column
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise SpecError(shown, "the file is empty; a spec is a mapping with app, model and gpu")
    return text


def _fast_parse(text: str) -> Any | None:
    """Parse with the C safe loader, or return None to take the positioned path."""
    if any(ch in text for ch in "&*!<"):
        return None
    try:
        yaml = YAML(typ="safe", pure=False)
        if "CParser" not in type(yaml.parser).__name__ and not _has_clib():
            return None
        data = yaml.load(text)
    except Exception:  # any failure is re-diagnosed, with positions, by the slow path
        return None
    return data if isinstance(data, dict) else None


def _has_clib() -> bool:
    try:
        import _ruamel_yaml  # noqa: F401
    except ImportError:
        return False
    return True


def _slow_load(text: str, shown: str) -> Spec:
    yaml = YAML(typ="rt")
    try:
        nodes = list(yaml.compose_all(text))
    except MarkedYAMLError as exc:
        raise _yaml_error(exc, shown) from None
    except YAMLError as exc:
        raise SpecError(shown, f"not valid YAML: {exc}") from None
    if len(nodes) != 1:
        raise SpecError(shown, "holds several YAML documents; put one spec in each file")
    _check_nodes(nodes[0], shown)
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        raise _yaml_error(exc, shown) from None
    if not isinstance(data, CommentedMap):
        kind = "a list" if isinstance(data, CommentedSeq) else "a single value"
        raise SpecError(shown, f"expected a mapping of keys (app, model, gpu, ...), found {kind}",
                        line=1, column=1)
    token = _first_token(data)
    if token:
        loc, what = token
        raise _located(shown, data, loc, f"this looks like {what}; {_SECRET_HINT}")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecErrors([_from_pydantic(shown, data, err) for err in exc.errors()]) from None
    problems = spec.problems()
    if problems:
        raise SpecErrors([_located(shown, data, loc, message) for loc, message in problems])
    return spec


def _yaml_error(exc: MarkedYAMLError, shown: str) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "not valid YAML"
    if "duplicate key" in problem or type(exc).__name__ == "DuplicateKeyError":
        problem = problem.split("\n")[0].replace('found duplicate key "', 'duplicate key "')
        problem = problem.split(" with value")[0]
        problem += "; each key may appear once"
    elif exc.context:
        problem = f"{problem} ({exc.context})"
    return SpecError(
        shown,
        problem[0].lower() + problem[1:] if problem else problem,
        line=mark.line + 1 if mark else None,
        column=mark.column + 1 if mark else None,
    )


def _check_nodes(root: Node, shown: str) -> None:
    """Refuse explicit tags and documents whose aliases expand past a sane size."""
    sizes: dict[int, int] = {}

    def size(node: Node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        tag = str(node.tag) if node.tag is not None else ""
        if tag and tag not in _PLAIN_TAGS:
            raise SpecError(
                shown,
                f"YAML tag {tag.replace('tag:yaml.org,2002:', '!!')} is not allowed in specs",
                line=node.start_mark.line + 1,
                column=node.start_mark.column + 1,
            )
        if depth > 64:
            raise SpecError(shown, "nested too deeply", line=node.start_mark.line + 1)
        total = 1
        if isinstance(node, MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        sizes[id(node)] = total
        if total > MAX_EXPANDED_NODES:
            raise SpecError(
                shown,
                f"anchors and aliases expand to more than {MAX_EXPANDED_NODES} values; "
                "write the values out",
                line=node.start_mark.line + 1,
                column=node.start_mark.column + 1,
            )
        return total

    size(root, 0)


# -- secrets -------------------------------------------------------------------------------


def _strings(data: Any, loc: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*loc, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, (*loc, index))
    elif isinstance(data, str):
        yield loc, data


def _first_token(data: Any) -> tuple[tuple[Any, ...], str] | None:
    for loc, value in _strings(data):
        stripped = value.strip()
        for pattern, what in _TOKEN_PATTERNS:
            if pattern.search(stripped):
                return loc, what
        if loc[:1] == ("secrets",) and "=" in stripped:
            return loc, "a KEY=VALUE secret"
    return None


# -- pydantic errors to located lines ------------------------------------------------------

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "literal_error": None,
}


def _from_pydantic(shown: str, data: CommentedMap, err: Any) -> SpecError:
    loc = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return _located(shown, data, loc[:-1], f'missing required key "{loc[-1]}"', key=False)
    if kind == "extra_forbidden":
        hint = _did_you_mean(str(loc[-1]), _known_keys(loc[:-1]))
        message = f'unknown key "{loc[-1]}"' + (f'; did you mean "{hint}"?' if hint else "")
        return _located(shown, data, loc, message, key=True)
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", err["ctx"]["expected"])
        message = "expected one of " + ", ".join(f'"{a}"' for a in allowed)
        hint = _did_you_mean(str(value), allowed) if isinstance(value, str) else None
        message += f', got {_describe(value)}' + (f'; did you mean "{hint}"?' if hint else "")
        return _located(shown, data, loc, message)
    if kind in _TYPE_NAMES:
        return _located(shown, data, loc, f"expected {_TYPE_NAMES[kind]}, got {_describe(value)}")
    message = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace("Input should be", "must be").replace("String should", "must")
    return _located(shown, data, loc, message[0].lower() + message[1:])


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names (YAML spelling) of the model found at ``loc``."""
    model: Any = Spec
    for step in loc:
        if isinstance(step, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        field = next(
            (f for name, f in model.model_fields.items() if (f.alias or name) == step), None
        )
        if field is None:
            return []
        model = _inner_model(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _located(
    shown: str, data: CommentedMap, loc: tuple[Any, ...], message: str, *, key: bool = False
) -> SpecError:
    """A SpecError at the deepest node of ``loc`` that exists in the document."""
    line = column = 1
    node: Any = data
    for index, step in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, CommentedMap) and step in node:
            line, column = node.lc.key(step) if (key and last) else node.lc.value(step)
            node = node[step]
        elif isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node):
            line, column = node.lc.item(step)
            node = node[step]
        else:
            break
    return SpecError(shown, message, line=line + 1, column=column + 1, key_path=key_path(loc))


def key_path(loc: tuple[Any, ...]) -> str:
    """``("scaling", "timeout")`` -> ``scaling.timeout``; odd keys are bracketed."""
    text = ""
    for step in loc:
        if isinstance(step, int):
            text += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(step)):
            text += f".{step}" if text else str(step)
        else:
            text += f'["{step}"]'
    return text
