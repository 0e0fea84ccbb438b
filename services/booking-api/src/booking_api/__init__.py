"""The booking API: a Flask app factory in the style of Flask's tutorial."""

from __future__ import annotations

from flask import Flask

from booking_api.contract import MAX_BODY_BYTES
from booking_core.config import Settings


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings from the environment unless `test_config` gives them."""
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    if test_config is None:
        app.config.from_prefixed_env("BOOKING_API")
        app.config["SETTINGS"] = Settings.from_env()
    else:
        app.config.update(test_config)
    app.json.sort_keys = False

    from booking_api import (
        auth,
        bookings_views,
        database,
        health,
        metrics,
        openapi,
        ops_views,
        problems,
        webhooks_views,
    )
    from booking_core.telemetry.sdk import setup_tracing

    if setup_tracing("booking-api"):
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz,metrics")
    metrics.init_app(app)
    problems.init_app(app)
    database.init_app(app)
    auth.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(bookings_views.bp)
    app.register_blueprint(ops_views.bp)
    app.register_blueprint(webhooks_views.bp)
    app.register_blueprint(openapi.bp)
    return app
