"""``pyliteral.string`` escapes a whole string in one pass; these tests hold it to the
character-at-a-time escaper it replaced, kept here as the reference: the same bytes for every
string (controls, quotes, backslashes, line separators, non-BMP characters, lone
surrogates), and a literal Python reads back as the string it came from."""

from __future__ import annotations

import ast

from hypothesis import given, settings
from hypothesis import strategies as st

from modal_iac.render.pyliteral import literal, string


def reference_string(text: str) -> str:
    """The escaper before the one-pass rewrite, character by character."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    return quote + "".join(_reference_escape(ch, quote) for ch in text) + quote


def _reference_escape(ch: str, quote: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch == quote:
        return "\\" + quote
    if ch in {"\n": "\\n", "\r": "\\r", "\t": "\\t"}:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    if ch.isascii() and ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# Every code point, surrogates included, with the troublesome ones drawn often.
TRICKY = "\\\"'\n\r\t\x00\x1f\x7f\x80\xa0\xff\u2028\u2029\ufeff\ud800\udfff\U0001f600\U0010ffff"
TEXT = st.text(
    st.one_of(st.characters(codec=None, categories=None), st.sampled_from(TRICKY)),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_one_pass_escape_matches_the_reference(text: str) -> None:
    assert string(text) == reference_string(text)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_the_literal_reads_back_as_the_string(text: str) -> None:
    written = string(text)
    assert written.isascii() and written.isprintable()
    assert ast.literal_eval(written) == text


def test_every_code_point_matches_the_reference() -> None:
    for start in range(0, 0x110000, 0x1000):
        block = "".join(map(chr, range(start, start + 0x1000)))
        block += "''" if start % 0x2000 else ""  # every other block in single quotes
        assert string(block) == reference_string(block), hex(start)


def test_keys_and_nested_values_use_the_same_escape() -> None:
    value = {"a\u2028b": ["'\"", "\U0001f600\\"]}
    written = literal(value)
    assert "\\u2028" in written and "\\U0001f600\\\\" in written
    assert ast.literal_eval(written) == value
