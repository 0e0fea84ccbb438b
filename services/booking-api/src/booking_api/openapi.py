"""The OpenAPI 3.1 document, served at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Blueprint

from booking_api.openapi_doc import document

bp = Blueprint("openapi", __name__)


@bp.get("/api/v1/openapi.json")
def openapi_json():
    """The machine-readable description of this API."""
    return document()
