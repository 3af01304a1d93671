"""Use cases over the domain: repositories, the unit of work, the bus and the handlers."""
