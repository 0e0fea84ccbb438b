"""The OpenAPI 3.1 description of the API (kept next to the code it describes)."""

from __future__ import annotations


def document() -> dict:
    """The whole OpenAPI document."""
    return {"openapi": "3.1.0", "info": {"title": "Booking API", "version": "1"}, "paths": {}}
