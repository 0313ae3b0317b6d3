"""A text field whose value may be a function that makes the text when it is read.

A plan over thousands of specs holds a generated Modal file (about 25 KiB) for each app, in
``Desired.rendered`` and in each change's ``AppRecord``, though printing the plan reads none
of them; only ``apply``, a saved plan and ``diff`` do. Such a field is given the render
instead of its result: the text is made again on each read and never kept, so the run holds
neither the generated files nor (``plan.Desired``) the specs' models. Everything that reads
the field (``asdict``, ``replace``, equality) sees plain text.
"""

from __future__ import annotations

from collections.abc import Callable


class DeferredText:
    """Data descriptor for a ``str`` dataclass field that also takes a ``() -> str``."""

    def __init__(self, default: str | None = None) -> None:
        self.default = default  # None: the field has no default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.slot = f"_{name}_text"

    def __get__(self, obj: object | None, owner: type | None = None) -> str:
        if obj is None:  # the dataclass asking for the default
            if self.default is None:
                raise AttributeError(self.name)
            return self.default
        value = obj.__dict__[self.slot]
        return value if isinstance(value, str) else value()

    def __set__(self, obj: object, value: str | Callable[[], str]) -> None:
        obj.__dict__[self.slot] = value
