"""fmt's cheap "already canonical" decision agrees with the full reformat, and no input makes
fmt fail with anything but a located error.

The property: for generated specs (keys in any order, odd indents, comments, quoting styles,
flow lists such as ``[H100:2, A100:2]``) and for mutated bundled specs, ``already_canonical``
never says True when ``format_text`` would change the text (or refuse it), so the decision fmt
makes (``formatted(text) == text``) equals ``format_text(text) == text``. And the cheap path
does decide the common case: the formatted form of every generated spec is recognised.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modal_iac.cli import main
from modal_iac.commands.canonical import already_canonical
from modal_iac.commands.fmt import format_text, formatted
from modal_iac.errors import SpecError, SpecErrors
from modal_iac.loading.load import find_spec_files
from modal_iac.loading.parse import round_trip

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = [p for d in ("specs", "examples") for p in find_spec_files(ROOT / d)]
TEXTS = [p.read_text(encoding="utf-8") for p in BUNDLED]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reformat(text: str) -> str | None:
    """The full path's answer, None when it refuses the text."""
    try:
        return format_text(text)
    except (SpecError, SpecErrors):
        return None


def assert_exact(text: str) -> None:
    expected = reformat(text) == text
    if already_canonical(text):
        assert expected, f"the cheap path calls this canonical; fmt would change it:\n{text}"
    try:
        decided = formatted(text) == text
    except (SpecError, SpecErrors):
        decided = False
    assert decided == expected


# -- generated specs -------------------------------------------------------------------------

PLAIN = st.sampled_from(["demo", "org/m", "L4", "5m", "32k", "0.9", "0.80", "12", "true", "a b"])
ODD = st.sampled_from(["H100:2", "it's", 'say "hi"', "x: y", "#x", "1e3", "0x1F", "~", "True", ""])
SCALAR_TEXT = st.one_of(PLAIN, ODD, st.text("ab:'\" #-", max_size=6))


@st.composite
def scalar_of(draw: st.DrawFn, values: st.SearchStrategy[str] = SCALAR_TEXT) -> str:
    value = draw(values)
    style = draw(st.sampled_from(["plain", "single", "double"]))
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    if style == "double":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def comment(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["", "", "", " # c", "  # about it", "   #x", "# tight"]))


@st.composite
def spec_text(draw: st.DrawFn, values: st.SearchStrategy[str] = SCALAR_TEXT) -> str:
    def scalar() -> st.SearchStrategy[str]:
        return scalar_of(values)

    indent = draw(st.sampled_from([2, 2, 2, 4, 1]))
    seq_offset = draw(st.sampled_from([2, 2, 0, 4]))
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append("# yaml-language-server: $schema=../schema.json")

    def extra(column: int) -> None:
        choice = draw(st.sampled_from(["", "", "", "", "blank", "comment", "blank2", "trail"]))
        if choice == "blank":
            lines.append("")
        elif choice == "blank2":
            lines.extend(["", ""])
        elif choice == "comment":
            lines.append(" " * draw(st.sampled_from([0, column, column + 1])) + "# note")
        elif choice == "trail" and lines:
            lines[-1] += " "

    def mapping(keys: list[str], column: int, depth: int) -> None:
        for key in draw(st.permutations(keys)):
            extra(column)
            pad = " " * column
            kind = draw(st.sampled_from(["scalar", "scalar", "flow", "map", "seq"]))
            if depth >= 2 and kind in ("map", "seq"):
                kind = "scalar"
            if kind == "scalar":
                lines.append(f"{pad}{key}: {draw(scalar())}{comment(draw)}")
            elif kind == "flow":
                items = draw(st.lists(scalar(), max_size=3))
                if draw(st.booleans()):
                    lines.append(f"{pad}{key}: [{', '.join(items)}]{comment(draw)}")
                else:
                    pairs = ", ".join(f"k{i}: {v}" for i, v in enumerate(items))
                    lines.append(f"{pad}{key}: {{{pairs}}}{comment(draw)}")
            elif kind == "map":
                lines.append(f"{pad}{key}:{comment(draw)}")
                inner = draw(
                    st.sampled_from(
                        [["id", "task", "revision"], ["timeout", "max_containers"], ["z", "a"]]
                    )
                )
                mapping(inner, column + indent, depth + 1)
            else:
                lines.append(f"{pad}{key}:{comment(draw)}")
                dash = " " * (column + seq_offset)
                for _ in range(draw(st.integers(1, 3))):
                    extra(column + seq_offset)
                    if draw(st.booleans()):
                        lines.append(f"{dash}- {draw(scalar())}{comment(draw)}")
                    else:
                        first, second = draw(st.permutations(["id", "name"]))
                        lines.append(f"{dash}- {first}: {draw(scalar())}{comment(draw)}")
                        lines.append(f"{dash}  {second}: {draw(scalar())}")

    top = ["app", "model", "gpu", "scaling", "labels", "zeta", "version"]
    if draw(st.booleans()):
        top = ["kind", "name", "models", "gpus", "router"]
    mapping(draw(st.lists(st.sampled_from(top), min_size=1, max_size=5, unique=True)), 0, 0)
    extra(0)
    return "\n".join(lines) + "\n"


@SETTINGS
@given(spec_text())
def test_the_cheap_decision_agrees_with_the_reformat_on_generated_specs(text: str) -> None:
    assert_exact(text)


@SETTINGS
@given(spec_text(PLAIN))
def test_the_formatted_form_of_a_generated_spec_is_recognised_cheaply(text: str) -> None:
    tidy = reformat(text)
    if tidy is not None and reformat(tidy) == tidy and _plain_subset(tidy):
        assert already_canonical(tidy), tidy


def _plain_subset(text: str) -> bool:
    """What the cheap path is meant to cover: no empty values, no spellings fmt may respell."""
    odd = ("~", "0x1F", "1e3", "True", "\\")
    try:
        data = round_trip(text, "<spec>")
    except (SpecError, SpecErrors):  # not a mapping: not a spec, and not the cheap path's
        return False
    glued = re.search(r"[^\s#]#", text)  # "a# b" is text, which the cheap path leaves alone
    return not glued and not any(mark in text for mark in odd) and _full(data)


def _full(value: object, in_flow: bool = False) -> bool:
    """No empty value anywhere, no mapping or list inside a flow one (the cheap path leaves
    those to the full path)."""
    if isinstance(value, dict | list):
        flow = bool(value.fa.flow_style()) if hasattr(value, "fa") else False
        values = value.values() if isinstance(value, dict) else value
        return bool(value) and not in_flow and all(_full(v, flow) for v in values)
    return value is not None and value != ""


# -- mutated bundled specs ---------------------------------------------------------------------

NOISE = st.sampled_from([*": -#'\"[]{}&*!|>%@`,?\n\t<", "  ", "\n\n", " # c", "- ", "H100:2"])


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(TEXTS)).split("\n")
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(lines) - 2, 0)))
        how = draw(
            st.sampled_from(
                ["swap", "drop", "dup", "indent", "dedent", "trail", "noise", "comment", "quote"]
            )
        )
        line = lines[at]
        if how == "swap" and at + 1 < len(lines):
            lines[at], lines[at + 1] = lines[at + 1], line
        elif how == "drop":
            del lines[at]
        elif how == "dup":
            lines.insert(at, line)
        elif how == "indent":
            lines[at] = " " * draw(st.integers(1, 2)) + line
        elif how == "dedent":
            lines[at] = line[draw(st.integers(1, 2)) :]
        elif how == "trail":
            lines[at] = line + " "
        elif how == "comment":
            lines.insert(at, " " * draw(st.integers(0, 6)) + "# moved")
        elif how == "quote" and ": " in line:
            key, _, value = line.partition(": ")
            quote = draw(st.sampled_from(["'", '"']))
            lines[at] = f"{key}: {quote}{value}{quote}"
        elif how == "noise":
            column = draw(st.integers(0, len(line)))
            lines[at] = line[:column] + draw(NOISE) + line[column:]
    return "\n".join(lines)


@SETTINGS
@given(mutated())
def test_the_cheap_decision_agrees_with_the_reformat_on_mutated_specs(text: str) -> None:
    assert_exact(text)


@SETTINGS
@given(mutated())
def test_fmt_and_the_loader_never_fail_with_a_traceback_on_mutated_specs(text: str) -> None:
    for work in (format_text, lambda t: round_trip(t, "<spec>")):
        try:
            work(text)
        except SpecErrors as exc:
            assert exc.errors and all(_located(error) for error in exc.errors)
        except SpecError as exc:
            assert _located(exc)


def _located(error: SpecError) -> bool:
    """One line that says where: the file, and a line number when the text has one."""
    text = str(error)
    return text.startswith("<spec>") and "\n" not in text


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bundled_spec_takes_the_cheap_path(path: Path) -> None:
    assert already_canonical(path.read_text(encoding="utf-8"))


def test_a_flow_list_of_gpu_counts_takes_the_cheap_path() -> None:
    text = "app: x\ngpu: [H100:2, A100:2]  # fallback\n"
    assert format_text(text) == text
    assert already_canonical(text)


def test_a_timestamp_in_a_flow_list_is_left_to_the_full_path() -> None:
    text = "app: x\ngpu: [2001-12-14t21:59:43.10-05:00]\n"
    assert not already_canonical(text)
    with pytest.raises(SpecErrors, match="reads as a date"):
        format_text(text)


HOSTILE = {
    "a multi-line value after a comment": "version: demo\napp: # c\n  id:#c\n    - demo\n",
    "comments ruamel cannot place": "#c\n  # d\n| # c  id:{  [ model:    ",
    "a flow list as the document": "#c, }\n[    version:  ]",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=list(HOSTILE))
@pytest.mark.parametrize("command", ["fmt", "validate", "plan"])
def test_hostile_text_is_formatted_or_one_located_line(
    command: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    status = main([command, str(path)] + (["--offline"] if command == "plan" else []))
    err = capsys.readouterr().err.strip().splitlines()
    assert status in (0, 1)
    assert all(re.match(rf"{re.escape(str(path))}:\d+:\d+: ", line) for line in err), err
    if command == "fmt" and status == 0:
        assert format_text(path.read_text(encoding="utf-8")) == path.read_text(encoding="utf-8")


def test_a_comment_ruamel_cannot_place_is_located_where_it_gave_up() -> None:
    with pytest.raises(SpecError, match="cannot place a comment") as caught:
        format_text(HOSTILE["comments ruamel cannot place"], "x.yaml")
    assert (caught.value.line, caught.value.column) == (3, 26)


@pytest.mark.parametrize("text", ["app: {k0: :}\n", "app: [a:]\n", "app: -x\n", "app: {k: [a]}\n"])
def test_what_ruamel_may_respell_is_left_to_the_full_path(text: str) -> None:
    assert not already_canonical(text)
    assert_exact(text)
