"""vLLM's own argument table, read offline: names, value types and where each argument goes.

``data/vllm_args.json`` is written by scripts/vllm_arg_table.py from vLLM's ``vllm serve``
parser and ``EngineArgs`` (a test in the CPU vLLM env fails when it is stale). With it,
``engine.args`` is checked with no vLLM installed:

- only exact Python names of ``vllm serve`` options (vLLM's parser would take ``api_ke``
  as ``--api-key``), with a did-you-mean from the real names;
- values by the option's type, choices and list-ness;
- no value can add an argument: ``vllm serve`` gets scalars as one ``--flag=value`` word,
  and the words of a list may not start with ``-``;
- serve-only options (not ``EngineArgs`` fields) go only to ``vllm serve``: ``LLM(...)``
  raises TypeError on them.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..tokens import shown
from .fields import Problem

# Serve-only options that configure vLLM's HTTP server itself (logging, CORS, docs, HTTP/1.1
# limits): the Python class has no HTTP server, so it loses nothing without them. Every other
# serve-only option changes what a request returns (chat template, tool calls, LoRA modules,
# ...), which the class could not match.
HTTP_SERVER_ONLY = frozenset(
    {
        "allow_credentials",
        "allowed_headers",
        "allowed_methods",
        "allowed_origins",
        "disable_access_log_for_endpoints",
        "disable_fastapi_docs",
        "disable_uvicorn_access_log",
        "enable_log_deltas",
        "enable_log_outputs",
        "enable_log_requests",
        "enable_offline_docs",
        "enable_request_id_headers",
        "enable_server_load_tracking",
        "h11_max_header_count",
        "h11_max_incomplete_event_size",
        "log_error_stack",
        "max_log_len",
        "middleware",
        "sse_keep_alive_interval",
        "uvicorn_log_level",
    }
)
# Serve-only options that stop vllm serve answering plain HTTP on the host and port modaliac's
# proxy forwards to (cli_args.py in vLLM 0.33: --grpc serves gRPC on --port, --uds a Unix
# socket, --headless no API server, the ssl options HTTPS).
BREAKS_THE_PROXY = frozenset(
    {
        "enable_ssl_refresh",
        "grpc",
        "headless",
        "ssl_ca_certs",
        "ssl_cert_reqs",
        "ssl_certfile",
        "ssl_ciphers",
        "ssl_keyfile",
        "uds",
    }
)
# ``vllm serve`` options the table leaves out (scripts/vllm_arg_table.py SKIPPED): not settings.
NOT_ENGINE_ARGS = {
    "config": "vllm serve --config reads further arguments from a file; write each one "
    "under engine.args instead",
    "help": "vllm serve --help prints help and exits; it is not an engine argument",
}
_ONE_WORD = "a process argument cannot carry it"
_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "human_int": 'a whole number like 8192 or "32k"',
    "human_int_or_auto": 'a whole number like 8192 or "32k", or "auto"',
    "json": "a mapping or a list (vLLM reads it as JSON)",
    "json_or_str": "a mapping (vLLM reads it as JSON) or text",
}


@dataclass(frozen=True)
class Arg:
    """One ``vllm serve`` option by its Python name."""

    name: str
    kind: str  # switch (bare flag), boolean (--x / --no-x), value
    on: str  # the flag
    off: str | None  # a boolean's false flag
    type: str | None  # a value's type (see _TYPE_WORDS)
    list: bool  # takes several values
    repeat: bool  # a list given as the flag once per value (argparse append)
    choices: tuple[Any, ...] | None
    engine_field: bool  # an EngineArgs field, so usable in LLM(...)


@dataclass(frozen=True)
class Table:
    vllm: str
    args: Mapping[str, Arg]


@functools.cache
def table() -> Table:
    text = resources.files("modal_iac").joinpath("data/vllm_args.json").read_text("utf-8")
    data = json.loads(text)
    args = {
        name: Arg(
            name=name,
            kind=entry["kind"],
            on=entry["on"],
            off=entry.get("off"),
            type=entry.get("type"),
            list=bool(entry.get("list")),
            repeat=bool(entry.get("repeat")),
            choices=tuple(entry["choices"]) if "choices" in entry else None,
            engine_field=entry["engine_field"],
        )
        for name, entry in data["args"].items()
    }
    return Table(vllm=data["vllm"], args=args)


def lookup(name: str) -> Arg | None:
    return table().args.get(name)


def applies_to(version: str | None) -> bool:
    """Whether the table describes this vLLM release (None: the default pin)."""
    return version is None or version == table().vllm


def close_name(name: str) -> str | None:
    """The real name ``name`` most likely meant: the one it abbreviates, else the nearest."""
    names = sorted(table().args)
    longer = [n for n in names if n.startswith(name)]
    if len(longer) == 1:
        return longer[0]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.7)
    return close[0] if close else None


def unknown_name(name: str, managed: Mapping[str, str]) -> str:
    """The message for a name that is no ``vllm serve`` option."""
    if name in NOT_ENGINE_ARGS:
        return NOT_ENGINE_ARGS[name]
    found = f"not a vLLM {table().vllm} engine argument"
    if name.startswith("guided_"):
        return (
            f"{found}: structured outputs are configured with structured_outputs_config, "
            "and guided_* request fields are silently ignored"
        )
    close = close_name(name)
    if close is None:
        return f"{found}; `vllm serve --help=all` lists them (by their flag, --with-dashes)"
    if close in managed:
        return f"{found}; did you mean {close}? modaliac sets that from {managed[close]}"
    return f"{found}; did you mean {close}?"


def check_value(name: str, value: Any) -> None:
    """Raise a Problem (at the value, or the list item) unless ``value`` suits ``name``."""
    arg = lookup(name)
    if value is None:
        return  # vLLM's default: left out of both paths
    if arg is None:  # another vLLM pin: only what keeps the argv safe
        if isinstance(value, list):
            for index, item in enumerate(value):
                _check_words(name, item, index, in_list=True)
        else:
            _check_words(name, value)
        return
    if arg.kind in ("switch", "boolean"):
        if not isinstance(value, bool):
            raise Problem(f"expected true or false ({arg.on} is a switch), got {_shown(value)}")
        return
    if not arg.list:
        _check_one(arg, value)
        return
    if not isinstance(value, list):
        raise Problem(f"expected a list of {_TYPE_WORDS[arg.type or 'str']}, like [a, b]")
    if not value:
        raise Problem("expected at least one item (or leave the argument out)")
    for index, item in enumerate(value):
        _check_one(arg, item, index, in_list=True)


def _check_one(arg: Arg, value: Any, *at: int, in_list: bool = False) -> None:
    kind = arg.type or "str"
    if not _has_type(kind, value):
        raise Problem(f"expected {_TYPE_WORDS[kind]}, got {_shown(value)}", *at)
    if arg.choices is not None and value not in arg.choices:
        listed = ", ".join(str(c) for c in arg.choices)
        raise Problem(f"expected one of {listed}; got {_shown(value)}", *at)
    _check_words(arg.name, value, *at, in_list=in_list)


_HUMAN_INT = re.compile(r"[0-9]+(?:\.[0-9]+)?[kKmMgGtT]?")


def _has_type(kind: str, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float) and math.isfinite(value)
    if kind in ("human_int", "human_int_or_auto"):
        if isinstance(value, str):
            return bool(_HUMAN_INT.fullmatch(value)) or (
                kind == "human_int_or_auto" and value == "auto"
            )
        return isinstance(value, int)
    if kind == "json":
        return isinstance(value, dict | list)
    if kind == "json_or_str":
        return isinstance(value, dict | str)
    return isinstance(value, str)


def _check_words(name: str, value: Any, *at: int, in_list: bool = False) -> None:
    """No value may read as a flag of its own or break the argv's line.

    A mapping or list is one JSON word; a scalar after ``--flag=`` is one word whatever it
    says; an item of a list of values is a word of its own, which argparse reads as a flag
    when it starts with '-' (and vLLM's own pre-parser when it also holds a '.').
    """
    if isinstance(value, dict | list):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise Problem("holds a value JSON cannot carry (vLLM reads it as JSON)", *at) from None
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise Problem(f"expected a finite number, got {value}", *at)
    text = _text(value)
    if "\x00" in text:  # line breaks are fine (chat templates): each word is passed as is
        raise Problem(f"holds a NUL character; remove it: {_ONE_WORD}", *at)
    if text.startswith("-") and (in_list or isinstance(value, str)):
        what = f"each item of {name} is one value" if in_list else f"{name} takes one value"
        raise Problem(
            f"starts with '-', which vllm serve could read as a flag of its own: {what}, "
            "never further arguments",
            *at,
        )


def split(args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``engine.args`` as (EngineArgs fields, serve-only options); None values are left out.

    A name the table does not hold (another vLLM pin) goes to both, as the user wrote it.
    """
    engine: dict[str, Any] = {}
    serve_only: dict[str, Any] = {}
    for name, value in args.items():
        if value is None:
            continue
        arg = lookup(name)
        if arg is None or arg.engine_field:
            engine[name] = value
        else:
            serve_only[name] = value
    return engine, serve_only


def surface_problems(
    args: Mapping[str, Any], class_on: bool, http_on: bool
) -> list[tuple[tuple[str, ...], str]]:
    """Serve-only options in a spec whose surfaces cannot use them."""
    found: list[tuple[tuple[str, ...], str]] = []
    _, serve_only = split(args)
    for name in sorted(serve_only):
        at = ("engine", "args", name)
        if http_on and name in BREAKS_THE_PROXY and serve_only[name] is not False:
            found.append(
                (
                    at,
                    f"{name} stops vllm serve answering plain HTTP on the port modaliac's "
                    "proxy forwards to (surfaces.http.port); drop it",
                )
            )
            continue
        if class_on and name not in HTTP_SERVER_ONLY:
            if http_on:
                why = (
                    "the Python class (surfaces.class) cannot use it and would answer "
                    "differently from the HTTP server; turn surfaces.class off or drop it"
                )
            else:
                why = (
                    "the Python class (surfaces.class), this spec's only vLLM surface, cannot "
                    "use it; serve over surfaces.http with surfaces.class off, or drop it"
                )
            found.append((at, f"{name} is a `vllm serve` option, not an EngineArgs field: {why}"))
        elif not http_on:
            found.append(
                (
                    at,
                    f"{name} configures vllm serve's HTTP server and this spec has no "
                    "surfaces.http: drop it or turn surfaces.http on",
                )
            )
    return found


def argv_words(name: str, value: Any) -> list[str]:
    """The ``vllm serve`` words of one argument: a scalar is one ``--flag=value`` word, so
    no value can be read as another flag; a list of several values follows its flag."""
    arg = lookup(name)
    flag = arg.on if arg else "--" + name.replace("_", "-")
    if value is None:
        return []
    if value is True:
        return [flag]
    if value is False:
        if arg is None:
            return ["--no-" + flag[2:]]
        return [] if arg.off is None else [arg.off]
    if isinstance(value, list) and (arg is None or arg.list):
        if arg is not None and arg.repeat:
            return [f"{flag}={_text(item)}" for item in value]
        if len(value) == 1:
            return [f"{flag}={_text(value[0])}"]
        # Several values are words of their own: validation refused items that start with '-'.
        return [flag, *(_text(item) for item in value)]
    return [f"{flag}={_text(value)}"]


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return shown(value, 40)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)
