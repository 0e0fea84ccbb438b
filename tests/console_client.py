"""A browser-like HTTP client of the ops console, for the tests that sign in and post its forms."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlencode


class Client:
    """A browser-like HTTP client: keeps the session cookie, sends forms, reads the CSRF token."""

    def __init__(self, port: int):
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, form: dict | None = None,
                headers: dict | None = None) -> tuple[int, dict, str]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if self.cookie:
            h["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        headers_out = {k.lower(): v for k, v in r.getheaders()}
        headers_out["set-cookie-all"] = r.headers.get_all("Set-Cookie") or []
        text = r.read().decode()
        c.close()
        return r.status, headers_out, text

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict, **kw):
        return self.request("POST", path, form, **kw)

    def sign_in(self, token: str, **kw) -> tuple[int, dict, str]:
        status, headers, text = self.post("/ops/sign-in", {"token": token}, **kw)
        for c in headers["set-cookie-all"]:
            if c.startswith("ops_session="):
                self.cookie = c.split(";")[0]
        return status, headers, text

    def csrf(self, path: str = "/ops/queues") -> str:
        _, _, html = self.get(path)
        return re.search(r'name="csrf" value="([^"]+)"', html).group(1)
