"""Reading settings from an environment mapping: typed reads that collect every problem instead
of stopping at the first, and the one ``ConfigError`` that names them all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from webhook_app.config import values
from webhook_app.config.values import Invalid

T = TypeVar("T")


class ConfigError(Exception):
    """One or more settings are missing or malformed. ``problems`` holds (variable, problem)
    pairs, every one found, in the order read; the message is one line per problem."""

    def __init__(self, variable: str, problem: str, *more: tuple[str, str]):
        self.problems = [(variable, problem), *more]
        self.variable = variable
        super().__init__("\n".join(f"{name}: {text}" for name, text in self.problems))

    @property
    def variables(self) -> list[str]:
        return [name for name, _ in self.problems]


class Reader:
    """Typed reads of an environment mapping. A value is stripped, and a blank one is unset (the
    default). A bad value reads as None and its problems are kept, in the order read, with
    ``bad``'s (rules between variables); ``finish`` raises them all as one ``ConfigError``."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.problems: list[tuple[str, str]] = []
        self.notes: dict[str, str] = {}  # added to a variable's parse problems: " (account main)"

    def text(self, name: str, default: str = "") -> str:
        """The value as set, not parsed."""
        return self.environ.get(name, "").strip() or default

    def bad(self, name: str, problem: str) -> None:
        self.problems.append((name, problem))

    def parsed(self, name: str, parse: Callable[..., T], default: T, **options) -> T | None:
        """``parse(value, **options)``, the default when unset, None (and its problems kept) when bad."""
        raw = self.text(name)
        if not raw:
            return default
        try:
            return parse(raw, **options)
        except Invalid as invalid:
            for problem in invalid.problems:
                self.bad(name, problem + self.notes.get(name, ""))
            return None

    def flag(self, name: str, default: bool = False) -> bool | None:
        return self.parsed(name, values.flag, default)

    def whole(self, name: str, default: int, low: int, high: int) -> int | None:
        return self.parsed(name, values.whole, default, low=low, high=high)

    def number(self, name: str, default: float, low: float, high: float) -> float | None:
        return self.parsed(name, values.number, default, low=low, high=high)

    def finish(self) -> None:
        """Raise one ``ConfigError`` for every problem, in the order found."""
        if self.problems:
            raise ConfigError(*self.problems[0], *self.problems[1:])
