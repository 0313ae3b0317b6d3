"""No string a spec accepts can change the generated program; it can only become a value.

The property: take specs/kalm.yaml, put hypothesis-generated text (any unicode, quotes of
both kinds, backslashes, newlines, control characters, ``\"\"\"``, ``{{``, ``{%``, ``#``) in
every free-text field and pattern-checked names (without control characters in the one-line
fields: the revision, the served name, mount paths, the image's packages and environment; the
base image follows the registry's reference grammar), keep what `load_spec` accepts, render,
and check that the source parses, that every injected string comes back exactly (as a string
constant, or JSON-encoded in the ``vllm serve`` argv), and that with string values masked the
program is the same as for plain placeholder values.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from modal_iac.errors import SpecError, SpecErrors
from modal_iac.loading.load import load_spec
from modal_iac.render.app import Rendered, render
from modal_iac.render.pyliteral import INDENT, assignment, literal
from modal_iac.spec.app import HF_CACHE
from modal_iac.spec.reserved import clash

ROOT = Path(__file__).resolve().parent.parent
FAST = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Batches run ruff once per example; shrinking a failure would run it hundreds of times, and
# ruff's diff already shows what is wrong.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)

# Pieces that break naive escaping: quotes, escapes, line breaks of every kind, template
# and comment syntax, and characters Python or YAML treat specially.
TRICKY = [
    '"""',
    "'''",
    '"',
    "'",
    "\\",
    "\\n",
    "\\x41",
    "\\u0041",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "\x00",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ufffe",
    "\u200b",
    "\U0001f600",
    "é",
    "{{ app_name }}",
    "{% if http %}",
    "{#",
    "#",
    "# noqa",
    "${HOME}",
    "f'{x}'",
    "', __import__('os').system('x'), '",
    '"); import os  #',
    "\n\nimport os\nos.system('x')\n",
]
text = (
    st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=8)), min_size=1, max_size=6)
    .map("".join)
    .filter(bool)
)
# Control characters, which one-line fields refuse (fields.py).
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(piece: str) -> str:
    return CONTROLS.sub("", piece) or "x"


one_line_text = text.map(one_line)


def argv_piece(piece: str) -> str:
    """A free-text engine argument validate accepts: a process argument holds no NUL, and
    text that starts with '-' could read as a flag of its own (vllm_args.py)."""
    piece = piece.replace("\x00", "") or "x"
    return "x" + piece if piece.startswith("-") else piece


argv_text = text.map(argv_piece)
image_reference = st.from_regex(
    r"([a-z0-9]{1,8}\.[a-z]{2,4}(:[0-9]{1,5})?/)?[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}"
    r"(/[a-z0-9]{1,8}){0,2}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20})?",
    fullmatch=True,
)
object_name = st.from_regex(r"[a-zA-Z0-9._-]{1,64}", fullmatch=True)
env_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
tag_text = st.from_regex(r"[a-zA-Z0-9._-]{1,63}", fullmatch=True)
hf_id = st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}(/[A-Za-z0-9][A-Za-z0-9._-]{0,20})?", fullmatch=True
)


@dataclass(frozen=True)
class Injection:
    """One value for every free-text field and name of the spec."""

    app: str
    labels: tuple[tuple[str, str], tuple[str, str]]
    model_id: str
    revision: str
    served_name: str
    arg_text: str
    arg_list: tuple[str, str]
    arg_dict_key: str
    arg_dict_value: str
    mount_path: str
    volume_names: tuple[str, str]
    secrets: tuple[str, str]
    api_key_secret: str
    api_key_env: str
    base: str
    packages: tuple[str, str]
    env: tuple[tuple[str, str], tuple[str, str]]

    def strings(self) -> list[str]:
        """Every string injected, each of which must come back as a constant."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, tuple):
                for item in value:
                    walk(item)

        for value in vars(self).values():
            walk(value)
        return found


PLACEHOLDER = Injection(
    app="app",
    labels=(("l1", "v1"), ("l2", "v2")),
    model_id="org/model",
    revision="rev",
    served_name="served",
    arg_text="text",
    arg_list=("a", "b"),
    arg_dict_key="k",
    arg_dict_value="v",
    mount_path="/mnt",
    volume_names=("vol-1", "vol-2"),
    secrets=("secret-1", "secret-2"),
    api_key_secret="api-key",
    api_key_env="API_KEY",
    base="image",
    packages=("p1", "p2"),
    env=(("E1", "1"), ("E2", "2")),
)
ARGS = ("tokenizer", "ignore_patterns", "override_generation_config")


@st.composite
def injections(draw: st.DrawFn) -> Injection:
    labels = draw(
        st.lists(st.tuples(tag_text, tag_text), min_size=2, max_size=2, unique_by=lambda p: p[0])
    )
    env = draw(
        st.lists(
            st.tuples(env_name.filter(lambda k: k not in _FIXED_ENV), one_line_text | st.just("")),
            min_size=2,
            max_size=2,
            unique_by=lambda p: p[0],
        )
    )
    secrets = draw(st.lists(object_name, min_size=2, max_size=2, unique=True))
    return Injection(
        app=draw(object_name),
        labels=(labels[0], labels[1]),
        model_id=draw(hf_id),
        revision=draw(one_line_text),
        served_name=draw(one_line_text),
        arg_text=draw(argv_text),
        arg_list=(draw(argv_text), draw(argv_text)),
        arg_dict_key=draw(text),
        arg_dict_value=draw(text),
        mount_path="/" + draw(one_line_text),
        volume_names=(draw(object_name), draw(object_name)),
        secrets=(secrets[0], secrets[1]),
        api_key_secret=draw(object_name),
        api_key_env=draw(env_name),
        base=draw(image_reference),
        packages=(draw(one_line_text), draw(one_line_text)),
        env=(env[0], env[1]),
    )


_FIXED_ENV = {"HF_XET_HIGH_PERFORMANCE", "TORCHINDUCTOR_COMPILE_THREADS"}


@cache
def kalm_text() -> str:
    return (ROOT / "specs" / "kalm.yaml").read_text(encoding="utf-8")


def spec_data(inj: Injection) -> dict[str, Any]:
    """specs/kalm.yaml as plain data, with the injection in every free-text field."""
    data: dict[str, Any] = json.loads(json.dumps(YAML(typ="safe").load(kalm_text())))
    data["app"] = inj.app
    data["labels"] = dict(inj.labels)
    data["model"].update(id=inj.model_id, revision=inj.revision, served_name=inj.served_name)
    data["engine"]["args"] = {
        "tokenizer": inj.arg_text,
        "ignore_patterns": list(inj.arg_list),
        "override_generation_config": {inj.arg_dict_key: inj.arg_dict_value},
    }
    data["volumes"] = {HF_CACHE: inj.volume_names[0], inj.mount_path: inj.volume_names[1]}
    data["secrets"] = list(inj.secrets)
    data["surfaces"]["http"].update(api_key_secret=inj.api_key_secret, api_key_env=inj.api_key_env)
    data["image"] = {"base": inj.base, "packages": list(inj.packages), "env": dict(inj.env)}
    return data


def yaml_text(data: dict[str, Any]) -> str:
    """JSON, which is YAML, with every non-printable character written as a YAML escape."""
    raw = json.dumps(data, ensure_ascii=False, indent=1)
    return "".join(ch if ch.isprintable() or ch in "\n " else _yaml_escape(ch) for ch in raw)


def _yaml_escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def render_injection(inj: Injection, folder: Path) -> Rendered | None:
    """The rendered app, or None when the spec is refused (as a user would see it)."""
    path = folder / "spec.yaml"
    path.write_text(yaml_text(spec_data(inj)), encoding="utf-8")
    try:
        return render(load_spec(path))
    except (SpecError, SpecErrors):
        return None


def string_constants(tree: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def settings_block(tree: ast.Module) -> dict[str, Any]:
    """The module's UPPER_CASE constants, evaluated as literals."""
    found = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                found[target.id] = ast.literal_eval(stmt.value)
    return found


def shape(tree: ast.Module) -> str:
    """The program with every string value blanked: what no spec string may change."""

    class Blank(ast.NodeTransformer):
        def visit_Constant(self, node: ast.Constant) -> ast.Constant:
            return ast.Constant("") if isinstance(node.value, str) else node

    return ast.dump(Blank().visit(ast.parse(ast.unparse(tree))))


def definitions(tree: ast.Module) -> list[tuple[str, str]]:
    """Top-level statements by kind and name, and every function and class name."""
    top = []
    for stmt in tree.body:
        names = [t.id for t in getattr(stmt, "targets", []) if isinstance(t, ast.Name)]
        top.append((type(stmt).__name__, getattr(stmt, "name", ",".join(names))))
    nested = [
        ("def", node.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    return top + nested


def flag_values(argv: list[str], flag: str, count: int = 1) -> list[str]:
    """The values of ``flag``: its one ``--flag=value`` word, or the ``count`` words after it."""
    for word in argv:
        if word.startswith(flag + "="):
            return [word[len(flag) + 1 :]]
    at = argv.index(flag)
    return argv[at + 1 : at + 1 + count]


@cache
def placeholder_tree() -> ast.Module:
    with tempfile.TemporaryDirectory() as folder:
        rendered = render_injection(PLACEHOLDER, Path(folder))
    assert rendered is not None, "the placeholder spec must be valid"
    return ast.parse(rendered.source)


@FAST
@given(inj=injections())
def test_no_accepted_string_changes_the_program(inj: Injection, tmp_path: Path) -> None:
    rendered = render_injection(inj, tmp_path)
    if rendered is None:
        reject()  # refused by validation (a name that looks like a token, a secret listed twice)
    tree = ast.parse(rendered.source)

    constants = string_constants(tree)
    missing = [s for s in inj.strings() if s not in constants]
    assert not missing, f"not found as string constants: {missing!r}"

    values = settings_block(tree)
    assert values["APP_NAME"] == inj.app
    assert values["APP_TAGS"] == dict(inj.labels)
    assert values["MODEL_ID"] == inj.model_id
    assert values["MODEL_REVISION"] == inj.revision
    assert values["VOLUME_NAMES"] == {
        HF_CACHE: inj.volume_names[0],
        inj.mount_path: inj.volume_names[1],
    }
    assert values["SECRET_NAMES"] == list(inj.secrets)
    assert (values["API_KEY_SECRET"], values["API_KEY_ENV"]) == (
        inj.api_key_secret,
        inj.api_key_env,
    )
    assert values["BASE_IMAGE"] == inj.base
    assert values["PIP_PACKAGES"][1:] == list(inj.packages)
    assert dict(inj.env).items() <= values["IMAGE_ENV"].items()
    kwargs = values["ENGINE_KWARGS"]
    assert (kwargs["model"], kwargs["revision"]) == (inj.model_id, inj.revision)
    assert kwargs["tokenizer"] == inj.arg_text
    assert kwargs["ignore_patterns"] == list(inj.arg_list)
    assert kwargs["override_generation_config"] == {inj.arg_dict_key: inj.arg_dict_value}

    argv = values["SERVE_ARGS"]
    assert argv[0] == inj.model_id
    assert flag_values(argv, "--revision") == [inj.revision]
    assert flag_values(argv, "--served-model-name") == [inj.served_name]
    assert flag_values(argv, "--tokenizer") == [inj.arg_text]
    assert flag_values(argv, "--ignore-patterns", 2) == list(inj.arg_list)
    # Mappings reach `vllm serve` JSON-encoded, and decode back to exactly what was written.
    (encoded,) = flag_values(argv, "--override-generation-config")
    assert json.loads(encoded) == {inj.arg_dict_key: inj.arg_dict_value}

    baseline = placeholder_tree()
    assert definitions(tree) == definitions(baseline)
    assert shape(tree) == shape(baseline)


@FAST
@given(name=st.from_regex(r"[A-Z][A-Za-z0-9_]{0,10}[a-z][A-Za-z0-9_]{0,10}", fullmatch=True))
def test_class_names_only_ever_name_the_class(name: str, tmp_path: Path) -> None:
    """The one spec text that is not a value: it must stay one identifier."""
    data = spec_data(PLACEHOLDER)
    data["surfaces"]["class"] = {"name": name}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml_text(data), encoding="utf-8")
    if clash(name, "service") is not None:
        reject()
    tree = ast.parse(render(load_spec(path)).source)
    classes = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    kalm_class = spec_data(PLACEHOLDER)["surfaces"]["class"]["name"]
    # The HTTP server's own classes (Server, the proxy) have fixed names.
    fixed = [n.name for n in ast.walk(placeholder_tree()) if isinstance(n, ast.ClassDef)]
    assert classes == [name if c == kalm_class else c for c in fixed]
    baseline = [(kind, n) for kind, n in definitions(placeholder_tree()) if n != kalm_class]
    assert [(kind, n) for kind, n in definitions(tree) if n != name] == baseline


def test_a_refused_spec_is_refused_by_the_loader_not_by_the_renderer(tmp_path: Path) -> None:
    """The property skips refused specs; make sure refusals are what skips them."""
    assert render_injection(PLACEHOLDER, tmp_path) is not None
    twice = replace(PLACEHOLDER, secrets=("same", "same"))
    assert render_injection(twice, tmp_path) is None


# -- pyliteral.literal on its own ---------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(TRICKY)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text() | st.sampled_from(TRICKY), inner, max_size=4)
    ),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1, 1.0 and True are not the same)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(value=values, depth=st.integers(0, 3))
def test_literal_round_trips_through_literal_eval(value: Any, depth: int) -> None:
    source = literal(value, depth)
    assert same(ast.literal_eval(source), value)
    # At its indentation level, inside a function, it is still one expression statement.
    lines = [f"{INDENT * level}def f{level}():" for level in range(depth)]
    body = "\n".join([*lines, f"{INDENT * depth}x = {source}", ""])
    tree = ast.parse(body)
    assert sum(isinstance(n, ast.Assign) for n in ast.walk(tree)) == 1


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("inf"), ValueError),
        (float("nan"), ValueError),
        ({1: "a"}, TypeError),
        ({"a": {None: 1}}, TypeError),
        (b"bytes", TypeError),
        ({"a", "b"}, TypeError),
        (object(), TypeError),
    ],
    ids=["inf", "nan", "int-key", "nested-none-key", "bytes", "set", "object"],
)
def test_literal_refuses_what_has_no_faithful_literal(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        literal(value)


def ruff_format_check(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--check", "--diff", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )


def as_module(samples: list[Any]) -> str:
    return "".join(f"V{index} = {literal(value)}\n" for index, value in enumerate(samples))


def test_literal_output_is_already_ruff_formatted_for_tricky_strings() -> None:
    quotes = ['"', "'", "\"'", "'\"", '"\'"', "'\"'", '\\"', "\\'", "a\\", "\\\\"]
    non_printables = [
        chr(c) for c in [*range(0x20), *range(0x7F, 0xA1), 0xAD, 0x2028, 0xFEFF, 0xE000]
    ]
    samples: list[Any] = [*TRICKY, *quotes, *non_printables, "".join(TRICKY)]
    samples += [
        list(TRICKY),
        dict.fromkeys(quotes, "x"),
        {"nested": [{"a": TRICKY[:3]}, []], "": {}},
    ]
    samples.append("x" * 200)
    samples.append({"long": "y" * 200, "list": ["z" * 150]})
    result = ruff_format_check(as_module(samples))
    assert result.returncode == 0, result.stdout + result.stderr


@settings(max_examples=4, deadline=None, phases=NO_SHRINK)
@given(samples=st.lists(values, min_size=60, max_size=60))
def test_literal_output_is_already_ruff_formatted(samples: list[Any]) -> None:
    result = ruff_format_check(as_module(samples))
    assert result.returncode == 0, result.stdout + result.stderr


def ruff_format_check_dir(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--check", "--diff", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_assignment_wraps_long_values_as_ruff_does() -> None:
    """Around the line limit, ``NAME = "..."`` is wrapped in parentheses exactly when ruff would."""
    names = ["X", "MODEL_REVISION", "A_MUCH_LONGER_CONSTANT_NAME_HERE"]
    samples: list[Any] = ["x" * n for n in range(60, 100)]
    samples += ["é" * 10 + "x" * n for n in range(20, 40)]  # escaped: width counts the escapes
    samples += [["x" * 90], {"k": "v" * 90}, 10**80, None, 1.5e300]
    pairs = [(name, value) for name in names for value in samples]
    result = ruff_format_check("".join(assignment(name, value) + "\n" for name, value in pairs))
    assert result.returncode == 0, result.stdout + result.stderr
    for name, value in pairs:
        assert ast.literal_eval(assignment(name, value).split(" = ", 1)[1]) == value


def test_rendered_apps_with_tricky_strings_are_ruff_formatted(tmp_path: Path) -> None:
    """Every tricky piece in every free-text field (without its control characters where the
    field is one line), one rendered app per piece, one ruff run."""
    out = tmp_path / "out"
    out.mkdir()
    for index, piece in enumerate(TRICKY):
        line = one_line(piece)
        inj = replace(
            PLACEHOLDER,
            revision=line,
            served_name=line,
            arg_text=argv_piece(piece),
            arg_list=(argv_piece(piece), argv_piece(piece) + "2"),
            arg_dict_key=piece,
            arg_dict_value=piece,
            mount_path="/" + line,
            packages=(line, line + "2"),
            env=(("E1", line), ("E2", line + line)),
        )
        folder = tmp_path / str(index)
        folder.mkdir()
        rendered = render_injection(inj, folder)
        assert rendered is not None, piece
        (out / f"app_{index}.py").write_text(rendered.source, encoding="utf-8")
    result = ruff_format_check_dir(out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_apps_with_long_strings_are_ruff_formatted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for length in range(60, 90, 3):
        inj = replace(PLACEHOLDER, revision="r" * length, base="b" * length)
        folder = tmp_path / str(length)
        folder.mkdir()
        rendered = render_injection(inj, folder)
        assert rendered is not None
        (out / f"app_{length}.py").write_text(rendered.source, encoding="utf-8")
    result = ruff_format_check_dir(out)
    assert result.returncode == 0, result.stdout + result.stderr
