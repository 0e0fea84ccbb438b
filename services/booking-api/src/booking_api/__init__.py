"""The booking API: a Flask app factory in the style of Flask's tutorial."""

from __future__ import annotations

from flask import Flask

from booking_api.contract import MAX_BODY_BYTES
from booking_api.settings import ApiSettings, from_process
from booking_core.web.headers import BASE_SECURITY_HEADERS


class BookingApi(Flask):
    """Flask, with the held tenants' refusals answered before it (`held_refusals`)."""

    held_refusals = None

    def __call__(self, environ: dict, start_response):
        # Ahead of `wsgi_app`, so ahead of whatever wraps it too (OpenTelemetry's Flask instrumentation).
        if self.held_refusals is not None:
            answered = self.held_refusals(environ, start_response)
            if answered is not None:
                return answered
        return self.wsgi_app(environ, start_response)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: this process's settings (`settings.from_process`) unless `test_config` gives them.

    `test_config` holds Flask keys and either "API" (an ApiSettings) or "SETTINGS"
    (the shared Settings, with the API's own at their defaults).
    """
    app = BookingApi(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    if test_config is None:
        api = from_process()
    else:
        app.config.update(test_config)
        api = test_config.get("API") or ApiSettings(core=test_config["SETTINGS"])
    app.config["API"], app.config["SETTINGS"] = api, api.core
    app.json.sort_keys = False

    from booking_api import (
        admission,
        auth,
        bookings_views,
        database,
        health,
        metrics,
        openapi,
        ops_plans,
        ops_views,
        problems,
        webhooks_views,
    )
    from booking_api.held_refusals import HeldRefusals
    from booking_core.telemetry.sdk import setup_tracing

    if setup_tracing("booking-api"):
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz,metrics")
    metrics.init_app(app)

    @app.after_request
    def _security_headers(resp):
        """The headers of every response of the platform (booking_core.web.headers), booking-events' too."""
        for name, value in BASE_SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        return resp

    problems.init_app(app)
    database.init_app(app)
    auth.init_app(app)
    admission.init_app(app)
    app.held_refusals = HeldRefusals(app.extensions["booking_identities"], app.extensions["booking_admission"])
    app.register_blueprint(health.bp)
    app.register_blueprint(bookings_views.bp)
    app.register_blueprint(ops_views.bp)
    app.register_blueprint(ops_plans.bp)
    app.register_blueprint(webhooks_views.bp)
    app.register_blueprint(openapi.bp)
    return app
