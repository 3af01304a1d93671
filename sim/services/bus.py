"""A tiny message bus: event type -> subscribed handlers (the Observer pattern)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sim.domain.events import DomainEvent

E = TypeVar("E", bound=DomainEvent)
Handler = Callable[[DomainEvent], None]


class MessageBus:
    """Dispatches each published event to the handlers of its type and of its base types."""

    def __init__(self) -> None:
        self._handlers: dict[type[DomainEvent], list[Handler]] = {}
        self._resolved: dict[type[DomainEvent], tuple[Handler, ...]] = {}

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        """Call ``handler`` with every published event that is an instance of ``event_type``."""
        self._handlers.setdefault(event_type, []).append(handler)  # type: ignore[arg-type]
        self._resolved.clear()

    def handlers_for(self, event_type: type[DomainEvent]) -> tuple[Handler, ...]:
        """Return the handlers an event of ``event_type`` reaches, most specific type first."""
        handlers = self._resolved.get(event_type)
        if handlers is None:
            handlers = tuple(h for cls in event_type.__mro__ for h in self._handlers.get(cls, ()))
            self._resolved[event_type] = handlers
        return handlers

    def publish(self, event: DomainEvent) -> None:
        """Deliver one event to its handlers, in subscription order."""
        for handler in self.handlers_for(type(event)):
            handler(event)
