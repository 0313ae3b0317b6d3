"""The one exception family modaliac raises. The CLI turns each into one line on stderr."""

from __future__ import annotations


class ModaliacError(Exception):
    """Root of every error modaliac reports to a user (exit status 1)."""


class SpecError(ModaliacError):
    """A problem in a spec file, located as precisely as the YAML allows.

    Renders as ``path:line:col: key.path: message``; line and column are 1-based. A warning
    also carries the ``code`` of its rule (``MDL001``, ``tight-fit``) and the ``fix`` it
    suggests, for machine-readable plans; the message already says both in words.
    """

    def __init__(
        self,
        path: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        key_path: str = "",
        code: str = "",
        fix: str = "",
    ) -> None:
        self.path = path
        self.message = message
        self.line = line
        self.column = column
        self.key_path = key_path
        self.code = code
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        prefix = f"{where}: "
        if self.key_path:
            prefix += f"{self.key_path}: "
        return prefix + self.message


class SpecErrors(ModaliacError):
    """Several independent problems found in one pass over one or more specs."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.path, e.line or 0, e.column or 0))
        super().__init__("\n".join(str(e) for e in self.errors))


class StateError(ModaliacError):
    """The recorded state cannot be read or does not match this version of modaliac."""
