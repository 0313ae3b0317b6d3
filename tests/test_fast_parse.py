"""The fast parse (libyaml's events) builds what the round-trip loader builds, or declines.

What it yields, warnings are located from: so every mapping, list and scalar must have the
round-trip loader's type and every key and item its line and column. Whatever it declines goes
to the round-trip path, which words the errors; a property test mutates the real specs and
checks that ``load_spec`` gives the same spec, warnings or error lines either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from modal_iac.errors import SpecError, SpecErrors
from modal_iac.loading import fast as fast_pass
from modal_iac.loading import load, parse
from modal_iac.loading.fast import fast_parse
from modal_iac.loading.parse import MAX_DEPTH, round_trip, round_trip_yaml

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "specs").glob("*.yaml"))
# No example has environments: this seed's overrides warn (a moving revision), so merged
# documents' warnings are located on both paths too.
ENVIRONMENTS = """\
app: minilm
model:
  id: sentence-transformers/all-MiniLM-L6-v2
  revision: c9745ed1d9f207416be6d2e6f8de32d1f16199bf
  task: embed
gpu: [L4, A10]
environments:
  dev:
    model:
      revision: main
    scaling:
      max_containers: 2
  prod:
    gpu: [H100:2]
    scaling:
      min_containers: 1
"""
SHOWN = "spec.yaml"
SEEDS = [path.read_text(encoding="utf-8") for path in SPECS] + [ENVIRONMENTS]


def shape(data: Any) -> Any:
    """Everything of ``data`` that loading reads: types, values, and every position."""
    if isinstance(data, CommentedMap):
        items = [(k, tuple(data.lc.data[k]), shape(v)) for k, v in data.items()]
        return ("map", data.lc.line, data.lc.col, items)
    if isinstance(data, CommentedSeq):
        items = [(tuple(data.lc.data[i]), shape(v)) for i, v in enumerate(data)]
        return ("seq", data.lc.line, data.lc.col, items)
    return (type(data).__name__, data)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_example_parses_fast_as_the_round_trip_loader_does(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fast = fast_parse(text, SHOWN)
    assert fast is not None
    assert shape(fast) == shape(round_trip_yaml().load(text))


@pytest.mark.parametrize(
    "text",
    [
        "gpu: [H100:2, A100-80GB:2]\n",  # libyaml refuses the flow colon; it is swapped
        "app: a  # pin one (revision: <commit>)\n",  # a "<" in a comment is only a comment
        "a: {x: 1, y: [b:c]}\n",
        "a: |\n  line one\n  line two\n",
        "a: >\n  folded\n",
        "a: [0.9, 12, -3, true, False, ~, null, '', \"q\"]\n",
        "models:\n- id: x\n  revision: main\n- id: y\n",
    ],
)
def test_plain_yaml_parses_fast_alike(text: str) -> None:
    fast = fast_parse(text, SHOWN)
    assert fast is not None
    assert shape(fast) == shape(round_trip_yaml().load(text))


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "base: &b {x: 1}\nc:\n  <<: *b\n",
        "a: 1\na: 2\n",
        "1: x\n",
        "a: 2001-12-14\n",
        "a: .inf\n",
        "a: 1e999\n",
        "a: " + "9" * 101 + "\n",
        "%YAML 1.1\n---\na: 1\n",
        "a: 1\n---\nb: 2\n",
        "- a\n",
        "a: =\n",
        "a: &x " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
        "a: \ue000\nb: [H100:2]\n",  # the placeholder itself: nothing to swap back safely
        "a: b\n\tc: d\n",
        "a:\nb: 1\n",  # an empty value: ruamel places it by what follows, inconsistently
        "a: #c\nb: 1\n",
        "x:\n- \n- a\n",
        "a: {x:1}\n",  # the key x:1, with an empty value
    ],
)
def test_what_only_the_round_trip_path_may_judge_is_declined(text: str) -> None:
    assert fast_parse(text, SHOWN) is None


def test_deep_nesting_is_refused_without_descending_it() -> None:
    """libyaml's parser keeps its own stack, and the pass stops at MAX_DEPTH: 100,000 levels,
    which would crash a recursive composer (and take libyaml minutes to read), are refused
    at level 65, as the round-trip path refuses them."""
    text = "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(SpecError) as fast:
        fast_parse(text, SHOWN)
    expected = "spec.yaml:1:68: a: nested more than 64 levels deep; flatten this value"
    assert str(fast.value).startswith(expected)
    with pytest.raises(SpecError) as slow:
        round_trip(text, SHOWN)
    assert str(slow.value) == str(fast.value)


# -- what the fast path refuses, it words as the round-trip path does -------------------------
# Both paths read their limits from parse's module constants: small limits let small texts
# cross them in every shape (flow and block, at every level, beside anchors, tags, odd keys
# and values, a second document or broken YAML after the limit).

SMALL_COUNT, SMALL_DEPTH = 12, 4
CLEAN_KEYS = [f"k{i}" for i in range(20)]
CLEAN_VALUES = ["1", "x", "H100:2", "''", '"q"', "~"]
CLEAN_AFTER = ["", "z: 1\n"]
# Mostly what the fast path builds; now and then what only the round-trip path judges, and
# what it reports first: broken YAML, a second document, deeper nesting, an alias.
KEYS = [*CLEAN_KEYS, '"q"', "1", "<<", "k0"]
VALUES = CLEAN_VALUES * 6 + [".inf", "2001-01-01", "&a x", "*a", "!!s x"]
AFTER = [*CLEAN_AFTER, "z: [\n", "---\nb: 1\n", "z: " + "[" * 6 + "]" * 6 + "\n", "z: &b [*b]\n"]


def document(keys: list[str], values: list[str], after: list[str]) -> st.SearchStrategy[str]:
    """A mapping of scalars, and lists and mappings of them, each written flow or block;
    with only CLEAN_KEYS, no mapping repeats a key."""
    unique = keys == CLEAN_KEYS

    def entries(inner: st.SearchStrategy[Any], **size: int) -> st.SearchStrategy[Any]:
        pair = st.tuples(st.sampled_from(keys), inner)
        return st.lists(pair, unique_by=(lambda kv: kv[0]) if unique else None, **size)

    tree = st.recursive(
        st.sampled_from(values),
        lambda inner: (
            st.tuples(st.just("seq"), st.lists(inner, max_size=8), st.booleans())
            | st.tuples(st.just("map"), entries(inner, max_size=8), st.booleans())
        ),
        max_leaves=40,
    )
    top = entries(tree, min_size=1, max_size=4)
    return st.builds(
        lambda items, tail: "\n".join(block(("map", items, True), 0)) + "\n" + tail,
        top,
        st.sampled_from(after),
    )


def flow(node: Any) -> str:
    if isinstance(node, str):
        return node
    kind, items, _ = node
    if kind == "seq":
        return "[" + ", ".join(flow(item) for item in items) + "]"
    return "{" + ", ".join(f"{key}: {flow(value)}" for key, value in items) + "}"


def block(node: Any, indent: int) -> list[str]:
    kind, items, _ = node
    lines = []
    for item in items:
        head, value = ("-", item) if kind == "seq" else (f"{item[0]}:", item[1])
        if isinstance(value, tuple) and value[2] and value[1]:  # a non-empty block
            lines += [" " * indent + head, *block(value, indent + 2)]
        else:
            lines.append(" " * indent + f"{head} {flow(value)}")
    return lines


def small_limits(patched: pytest.MonkeyPatch) -> None:
    for module in (parse, fast_pass):  # fast.py reads parse's limits, imported by name
        patched.setattr(module, "MAX_EXPANDED_NODES", SMALL_COUNT)
        patched.setattr(module, "MAX_DEPTH", SMALL_DEPTH)


def refusal(parse_text: Any, text: str) -> str | None:
    """The line ``parse_text`` refuses ``text`` with (None: it does not)."""
    try:
        parse_text(text, SHOWN)
    except SpecError as exc:
        return str(exc)
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=document(KEYS, VALUES, AFTER))
def test_a_refusal_of_the_fast_path_is_the_round_trip_paths(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        small_limits(patched)
        refused = refusal(fast_parse, text)
        if refused is not None:
            assert refusal(round_trip, text) == refused
        elif (fast := fast_parse(text, SHOWN)) is not None:
            assert shape(fast) == shape(round_trip_yaml().load(text))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=document(CLEAN_KEYS, CLEAN_VALUES, CLEAN_AFTER))
def test_plain_yaml_too_deep_or_too_big_is_refused_fast(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without anything for the round-trip path to judge, the fast path gives its answer:
    the same data, or the same refusal, never a second parse."""
    with monkeypatch.context() as patched:
        small_limits(patched)
        expected = refusal(round_trip, text)
        if expected is None:
            fast = fast_parse(text, SHOWN)
            assert fast is not None and shape(fast) == shape(round_trip(text, SHOWN))
        else:
            assert refusal(fast_parse, text) == expected


# -- the fast path and the round-trip path agree --------------------------------------------

SNIPPETS = [
    "H100:2",
    "[H100:2, L4]",
    "{x:1}",
    "yes",
    "0o17",
    "0x1f",
    "1_000",
    "012",
    "0.95",
    "1e3",
    ".inf",
    "2001-01-01",
    "<<",
    "&a x",
    "*a",
    "!!str x",
    '"quoted: text"',
    "'single'",
    "~",
    "null",
    "true",
    "",
    "a: b",
    "x # <commit>",
    "|\n  block",
    "L4",
    "main",
    "-1",
    "=",
    "é ü 日本",
]


def outcome(path: Path, env: str | None) -> Any:
    """What load_spec gives: the spec and warnings, or the error lines."""
    try:
        loaded = load.load_spec(path, env, default_environment=None)
    except SpecErrors as exc:
        return ("errors", [str(e) for e in exc.errors])
    except SpecError as exc:
        return ("error", str(exc))
    return ("spec", loaded.spec.model_dump(mode="json"), [str(w) for w in loaded.warnings])


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(SEEDS)).splitlines()
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        snippet = draw(st.sampled_from(SNIPPETS))
        how = draw(st.sampled_from(["value", "item", "insert", "delete", "copy", "indent"]))
        if how == "value" and ": " in line:
            lines[index] = line[: line.index(": ") + 2] + snippet
        elif how == "item":
            lines[index] = line[: len(line) - len(line.lstrip())] + "- " + snippet
        elif how == "insert":
            lines.insert(index, line[: len(line) - len(line.lstrip())] + "x: " + snippet)
        elif how == "delete" and len(lines) > 1:
            del lines[index]
        elif how == "copy":
            lines.insert(index, line)
        elif how == "indent":
            lines[index] = "  " + line
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=mutated(), env=st.sampled_from([None, "dev", "prod", "staging"]))
def test_the_fast_and_the_round_trip_path_load_alike(
    text: str,
    env: str | None,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    fast = fast_parse(text, SHOWN)
    if fast is not None:
        assert shape(fast) == shape(round_trip_yaml().load(text))
    taken = outcome(path, env)
    with monkeypatch.context() as patched:
        patched.setattr(load, "fast_parse", lambda text, shown: None)
        assert taken == outcome(path, env)


def test_an_escaped_stand_in_is_not_taken_for_a_glued_colon(tmp_path: Path) -> None:
    # "\ue000" in double quotes decodes to the stand-in the fast path swaps glued colons for:
    # beside a glued colon elsewhere (the image tag) it must stay the character it was.
    spec = tmp_path / "s.yaml"
    spec.write_text(
        'app: a0\ngpu: L4\nmodel:\n  id: org/m0\n  task: embed\n  revision: "r\\ue000"\n'
        "image:\n  base: 00_000000:0\n",
        encoding="utf-8",
    )
    assert load.load_spec(spec).spec.model.revision == "r\ue000"
