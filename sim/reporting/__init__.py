"""Plots and report folders: pure functions of results."""
