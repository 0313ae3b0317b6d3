"""Text shaped like a credential: specs hold secret NAMES only, and no error, plan or log
line repeats a value that looks like a secret (a token pasted into the wrong place).

Nothing heavy is imported here, so any module can check a value before it echoes it.
"""

from __future__ import annotations

import re

# Prefixes of real credentials. Secret NAMES such as "hf-token" or "sk-embedding-cache" do
# not match: where a pattern captures a tail, that tail must look random (_random_tail).
TOKEN_PATTERNS = [
    (re.compile(r"(?<![\w-])hf_([A-Za-z0-9]{20,})(?![\w-])"), "a Hugging Face token"),
    (re.compile(r"(?<![\w-])sk-([A-Za-z0-9_-]{16,})(?![\w-])"), "an API key (sk-...)"),
    (re.compile(r"(?<![\w-])(?:sk|rk|pk)_(?:live|test)_([A-Za-z0-9]{16,})(?![\w-])"), "an API key"),
    (
        re.compile(r"(?<![\w-])(?:ghp|gho|ghu|ghs|ghr)_([A-Za-z0-9]{20,})|github_pat_(\w{20,})"),
        "a GitHub token",
    ),
    (re.compile(r"(?<![\w-])(?:ak|as)-([A-Za-z0-9]{16,})(?![\w-])"), "a Modal token"),
    (re.compile(r"(?<![\w-])xox[abprs]-([A-Za-z0-9-]{10,})"), "a Slack token"),
    (re.compile(r"(?<![A-Z0-9])AKIA([0-9A-Z]{16})(?![A-Z0-9])"), "an AWS access key"),
    (re.compile(r"eyJ([A-Za-z0-9_-]{10,})\.[A-Za-z0-9_-]{10,}\."), "a JSON web token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
]


def token_kind(value: str) -> str | None:
    """What credential ``value`` holds something shaped like ("a Hugging Face token"), or
    None."""
    for pattern, what in TOKEN_PATTERNS:
        for match in pattern.finditer(value):
            tail = next((g for g in match.groups() if g), None)
            if tail is None or _random_tail(tail):
                return what
    return None


def _random_tail(tail: str) -> bool:
    """Generated tokens mix cases and digits; hyphenated words ("embedding-cache") do not."""
    return (
        any(c.isdigit() for c in tail)
        and any(c.isupper() for c in tail)
        and any(c.islower() for c in tail)
    ) or (len(tail) >= 32 and any(c.isdigit() for c in tail))


def shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for an error line: printable, at most ``limit`` characters, and never a
    value that looks like a secret (it is named by its kind instead)."""
    kind = token_kind(text)
    if kind is not None:
        return f"(a value that looks like {kind}, not shown)"
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return repr(cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "...")
