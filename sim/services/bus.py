"""A tiny message bus: event type -> subscribed handlers (the Observer pattern)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sim.domain.events import DomainEvent

E = TypeVar("E", bound=DomainEvent)
Handler = Callable[[DomainEvent], None]


class _Registry:
    """Handlers by event type, resolved once per concrete type (most specific type first)."""

    def __init__(self) -> None:
        self.handlers: dict[type[DomainEvent], list[Handler]] = {}
        self.resolved: dict[type[DomainEvent], tuple[Handler, ...]] = {}

    def add(self, event_type: type[DomainEvent], handler: Handler) -> None:
        self.handlers.setdefault(event_type, []).append(handler)
        self.resolved.clear()

    def of(self, event_type: type[DomainEvent]) -> tuple[Handler, ...]:
        handlers = self.resolved.get(event_type)
        if handlers is None:
            handlers = tuple(h for cls in event_type.__mro__ for h in self.handlers.get(cls, ()))
            self.resolved[event_type] = handlers
        return handlers


class MessageBus:
    """Dispatches each event to the handlers of its type and of its base types.

    Two kinds of handler: those of :meth:`subscribe` get an event after the transaction that
    raised it has committed (:meth:`publish`; they may open transactions of their own), and
    those of :meth:`subscribe_in_transaction` get it inside that transaction, just before it
    commits (:meth:`publish_in_transaction`), so what they write commits or rolls back with
    the change itself: the books are kept that way.
    """

    def __init__(self) -> None:
        self._after = _Registry()
        self._within = _Registry()

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        """Call ``handler`` with every published event that is an instance of ``event_type``."""
        self._after.add(event_type, handler)  # type: ignore[arg-type]

    def subscribe_in_transaction(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        """Call ``handler`` inside the transaction that raises an ``event_type`` event.

        The handler runs before the commit, in the open transaction: it must not open one of
        its own, and what it changes must not raise further events.
        """
        self._within.add(event_type, handler)  # type: ignore[arg-type]

    @property
    def has_transactional_handlers(self) -> bool:
        """Return True if any handler runs inside transactions."""
        return bool(self._within.handlers)

    def handlers_for(self, event_type: type[DomainEvent]) -> tuple[Handler, ...]:
        """Return the after-commit handlers an event of ``event_type`` reaches, in order."""
        return self._after.of(event_type)

    def in_transaction_handlers_for(self, event_type: type[DomainEvent]) -> tuple[Handler, ...]:
        """Return the in-transaction handlers an event of ``event_type`` reaches, in order."""
        return self._within.of(event_type)

    def publish(self, event: DomainEvent) -> None:
        """Deliver one committed event to its after-commit handlers, in subscription order."""
        for handler in self._after.of(type(event)):
            handler(event)

    def publish_in_transaction(self, event: DomainEvent) -> None:
        """Deliver one event of the open transaction to its in-transaction handlers."""
        for handler in self._within.of(type(event)):
            handler(event)
