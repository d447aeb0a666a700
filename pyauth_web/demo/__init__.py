"""Loopback servers for the demo and the end-to-end tests (needs the ``demo`` extra: aiohttp)."""
