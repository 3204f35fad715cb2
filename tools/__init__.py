"""Checks of the repository that are not tests: `make lint` runs them."""
