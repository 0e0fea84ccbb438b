"""API fixtures: the Flask app on the session's real Postgres and Redis."""

from __future__ import annotations

import pytest

from booking_api import create_app
from booking_core import tenants


@pytest.fixture
def app(settings):
    return create_app({"TESTING": True, "SETTINGS": settings})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def token(db_conn, tenant) -> str:
    """A client (non-admin) token of this test's tenant."""
    return tenants.create_token(db_conn, tenant["id"])["token"]


@pytest.fixture
def admin_token(db_conn, tenant) -> str:
    return tenants.create_token(db_conn, tenant["id"], admin=True)["token"]


@pytest.fixture
def auth(token) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_auth(admin_token) -> dict:
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.fixture
def booking_body():
    """Factory of a valid booking request, with overrides."""

    def make(**overrides) -> dict:
        body = {
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "item": "Sea-view room",
            "check_in": "2027-03-01",
            "check_out": "2027-03-04",
            "amount": "360.00",
            "currency": "EUR",
        }
        body.update(overrides)
        return body

    return make
