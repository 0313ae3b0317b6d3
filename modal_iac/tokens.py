"""Text shaped like a credential: specs hold secret NAMES only, and no error, plan or log
line repeats a value that looks like a secret (a token pasted into the wrong place).

A pattern is a credential's published prefix and shape. Where a secret NAME could share the
prefix ("hf-token", "sk-embedding-cache", "hf_token_for_the_team"), the part after it must
also look generated: names are words, tokens are not (``_generated``).

Nothing heavy is imported here, so any module can check a value before it echoes it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

_DIGITS = frozenset("0123456789")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_VOWELS = frozenset("aeiouyAEIOUY")
_SEPARATORS = re.compile("[-_]")


def _generated(tail: str) -> bool:
    """Whether the part of a token after its prefix looks generated rather than worded.

    Generated text mixes digits and both cases in one run ("Xq7RvN2m..."), or is long hex
    ("9f86d081884c..."), or, letters only (Hugging Face tokens), reads like no word: a run of
    five consonants, capitals side by side again and again, or hardly any vowels. Words joined
    by "-" or "_" ("embedding-cache-2024") are names."""
    text = _SEPARATORS.sub("", tail)
    if len(text) < 16:
        return False
    digits = sum(c in _DIGITS for c in text)
    upper = sum(c in _UPPER for c in text)
    lower = sum(c in _LOWER for c in text)
    if digits and upper and lower and text == tail:
        return True
    if digits and not (upper and lower) and len(text) >= 32 and digits >= len(text) / 5:
        return True
    if not (upper and lower):
        return False
    digit_runs = len(re.findall("[0-9]+", text))
    return digit_runs >= 3 or _unworded(re.sub("[0-9]", "", text))


def _unworded(letters: str) -> bool:
    if len(letters) < 12:
        return False
    consonant_run = max((len(run) for run in re.findall("[^aeiouyAEIOUY]+", letters)), default=0)
    capital_pairs = sum(a in _UPPER and b in _UPPER for a, b in itertools.pairwise(letters))
    vowels = sum(c in _VOWELS for c in letters)
    return consonant_run >= 5 or capital_pairs >= 6 or vowels < len(letters) / 5


def _not_a_word(tail: str) -> bool:
    """For prefixes no name starts with ("glpat-", "sk_live_"): anything but lower-case words."""
    return any(c in _DIGITS or c in _UPPER for c in tail)


_START = r"(?<![A-Za-z0-9])"  # not inside a word ("task-..."); after "-" or "_" is a new part
_END = r"(?![A-Za-z0-9])"
Check = Callable[[str], bool] | None
# (shape, what it looks like, the check its first group must pass, or None when the shape is
# specific enough). Anthropic's keys come before OpenAI's: both start with "sk-". Each shape
# stands on its own (between _START and _END), except a private key's armour line.
_SHAPES: list[tuple[str, str, Check]] = [
    ("hf_([A-Za-z0-9]{20,})", "a Hugging Face token", _generated),
    ("sk-ant-[a-z]+[0-9]*-([A-Za-z0-9_-]{20,})", "an Anthropic API key", _generated),
    ("sk-([A-Za-z0-9_-]{16,})", "an API key (sk-...)", _generated),
    ("(?:sk|rk|pk)_(?:live|test)_([A-Za-z0-9]{16,})", "a Stripe API key", _not_a_word),
    (
        "(?:gh[pousr]_([A-Za-z0-9]{30,})|github_pat_([A-Za-z0-9_]{40,}))",
        "a GitHub token",
        _generated,
    ),
    ("gl(?:pat|dt|rt|ptt)-([A-Za-z0-9_.-]{20,})", "a GitLab token", _not_a_word),
    ("AIza[0-9A-Za-z_-]{35}", "a Google API key", None),
    ("(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}", "an AWS access key", None),
    ("(?:a[ks]|w[ks])-([A-Za-z0-9]{16,})", "a Modal token", _generated),
    ("(?:xox[abposre]-[0-9]{6,}-|xapp-[0-9]-)[A-Za-z0-9-]{6,}", "a Slack token", None),
    (r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*", "a JSON web token", None),
]
_ARMOUR = (re.compile("-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"), "a private key", None)
TOKEN_PATTERNS = [(re.compile(f"{_START}{shape}{_END}"), what, c) for shape, what, c in _SHAPES]
TOKEN_PATTERNS.append(_ARMOUR)
# The same shapes inside longer words ("thf_..."): never a spec's secret name, but an error
# line that quotes such a word must not show what it holds.
_WITHIN = [(re.compile(shape), what, check) for shape, what, check in _SHAPES] + [_ARMOUR]


def _any(patterns: list[tuple[re.Pattern[str], str, Check]]) -> re.Pattern[str]:
    """Every pattern at once: most texts hold none, and one search tells."""
    return re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _, _ in patterns))


_ANY, _ANY_WITHIN = _any(TOKEN_PATTERNS), _any(_WITHIN)


def token_kind(value: str, *, within_words: bool = False) -> str | None:
    """What credential ``value`` holds something shaped like ("a Hugging Face token"), or
    None. ``within_words`` also finds one glued to other letters: what an error line may
    not repeat, rather than what a spec may not hold."""
    patterns = _WITHIN if within_words else TOKEN_PATTERNS
    if (_ANY_WITHIN if within_words else _ANY).search(value) is None:
        return None
    for pattern, what, check in patterns:
        if any(_passes(match, check) for match in pattern.finditer(value)):
            return what
    return None


def _passes(match: re.Match[str], check: Check) -> bool:
    return check is None or check(next((g for g in match.groups() if g), ""))


def hidden(kind: str) -> str:
    """What an error line says in place of a value shaped like a ``kind`` credential."""
    return f"(a value that looks like {kind}, not shown)"


def scrub(text: str) -> str:
    """``text`` (a third party's message, which may quote the file) with every token-shaped
    part replaced by what it looks like."""
    for pattern, what, check in _WITHIN:

        def replace(match: re.Match[str], what: str = what, check: Check = check) -> str:
            return hidden(what) if _passes(match, check) else match.group()

        text = pattern.sub(replace, text)
    return text


def printable(text: str) -> str:
    """``text`` with every character that is not printable (a control character, an escape
    sequence's ESC, a newline) shown as "?"."""
    return "".join(c if c.isprintable() else "?" for c in text)


def url_shown(url: str) -> str:
    """A URL as messages show it: printable, without a ``user:password@`` part, and at most
    120 characters."""
    text = printable(re.sub(r"(?<=://)[^/@]*@", "", url))
    return text if len(text) <= 120 else text[:117] + "..."


def shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for an error line: printable, at most ``limit`` characters, and never a
    value that looks like a secret (it is named by its kind instead)."""
    kind = token_kind(text, within_words=True)
    if kind is not None:
        return hidden(kind)
    cleaned = printable(text)
    return repr(cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "...")
