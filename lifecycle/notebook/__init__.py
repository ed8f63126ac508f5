"""Notebook support: the helpers notebooks/ import, a client of the service, and the runner that executes them."""
