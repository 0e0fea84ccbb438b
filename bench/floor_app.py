"""The HTTP server's floor: a bare WSGI app under the API's own gunicorn settings.

It reads the request body and answers 201 with a JSON body the size of a
confirm's answer, and does nothing else: no Flask, no validation, no database.
Its CPU per request is what gunicorn costs before the API does any work, so
`capacity.py` can say how much of a confirm's budget the server alone takes.
"""

from __future__ import annotations

import json

#: About the size of the API's answer to a confirm (1.3 KB).
_BODY = json.dumps({"id": "0" * 36, "padding": "x" * 1250}).encode()


def app(environ, start_response):
    """201 with a fixed JSON body, after reading the request body as the API does."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))])
    return [_BODY]
