"""The WSGI entry point for gunicorn: `gunicorn booking_api.wsgi:app`."""

from booking_api import create_app

app = create_app()
