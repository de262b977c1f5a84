"""Wingman Gateway: rooms in which AI agents and people swarm."""

__version__ = "0.1.0"
