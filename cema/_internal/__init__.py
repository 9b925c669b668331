"""Internals; among them the worker wire protocol and the executor server run in an env's python."""
