"""One function per use case, grouped by area: accounts, catalog, shopping, fulfilment."""
