"""Launcher: a Django + htmx dashboard in front of the Cyberdesk API."""

__version__ = "0.1.0"
