"""The one error a scenario can raise: ScenarioError, with every problem located by key path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MAX_PROBLEMS_SHOWN = 50
"""The most problems ``str(ScenarioError)`` lists; the rest are counted in a last line."""

Problem = tuple[str, str]
"""A problem: the dotted key path (``""`` for the whole file) and what is wrong there."""


class ScenarioError(ValueError):
    """A scenario file or mapping is invalid; ``problems`` lists (key path, message) pairs.

    ``str()`` gives one line per problem, e.g.
    ``scenarios/x.yaml: stations.app.servers: must be >= 1, got 0``.
    """

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        # One line per problem, whatever a message contains.
        self.problems: list[Problem] = [
            (path, " ".join(message.split())) for path, message in problems
        ]
        super().__init__(self._render())

    def _render(self) -> str:
        lines = []
        for path, message in self.problems[:MAX_PROBLEMS_SHOWN]:
            where = f"{self.source}: {_printable(path)}: " if path else f"{self.source}: "
            lines.append(where + message)
        hidden = len(self.problems) - MAX_PROBLEMS_SHOWN
        if hidden > 0:
            lines.append(f"{self.source}: ... and {hidden} more problems")
        return "\n".join(lines)

    def __str__(self) -> str:
        """Return one line per problem: ``source: key.path: message``."""
        return self._render()

    def __reduce__(self) -> tuple[type[ScenarioError], tuple[str, list[Problem]]]:
        """Pickle by source and problems (errors travel back from worker processes)."""
        return (type(self), (self.source, self.problems))


def _printable(text: str) -> str:
    """Escape characters that are not printable (a key with a line break stays on one line)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class Invalid(ValueError):
    """Raised inside validators: problems at key paths relative to the model being validated.

    The loader appends each relative path to the location pydantic reports, so a model-level check
    can point at the exact key (``warmup``, ``faults.2.outage``) instead of at the whole model.
    """

    def __init__(self, problems: Iterable[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(message for _, message in self.problems))

    @classmethod
    def at(cls, path: tuple[str | int, ...], message: str) -> Invalid:
        """Build a single problem at ``path``."""
        return cls([(path, message)])
