"""ecommerce-sim: discrete-event simulation of an e-commerce shop for capacity planning."""

__version__ = "0.1.0"
