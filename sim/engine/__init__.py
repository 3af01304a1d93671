"""The simulation engine: the only package that imports simpy."""
