"""A tenant's webhook receiver for the end-to-end tests: on 127.0.0.1, verifying with the reference library.

It checks every request's signature with `standardwebhooks` (the Standard
Webhooks reference library), processes each `webhook-id` once (a redelivery is
acknowledged and skipped, as a receiver should), and answers from a script:
`fail_first` requests get 503 before any is processed; `hold` keeps every
request waiting (a black-holed endpoint) until released; `refuse` answers every verified
request with that status (410: a final answer, so the delivery goes dead at once) until it is
set back to None.  `arrived` counts the requests that came in, answered or still held.

`add_endpoint` makes a receiver a tenant's endpoint; `deliveries` reads back what
the platform recorded for one.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class VerifyingReceiver:
    def __init__(self, *, fail_first: int = 0, hold: bool = False):
        self.secrets: list[str] = []
        self.fail_first = fail_first
        self.refuse: int | None = None
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # every request: webhook-id, status answered
        self.processed: dict[str, dict] = {}  # webhook-id -> the verified event, processed once
        self.bad_signatures = 0
        self.arrived = 0  # requests read, including those still held
        self.released = threading.Event()
        if not hold:
            self.released.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.arrived += 1
                receiver.released.wait(120)
                status = receiver.handle(body, headers)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, body: bytes, headers: dict) -> int:
        with self.lock:
            msg_id = headers.get("webhook-id", "")
            event = None
            for secret in self.secrets:
                try:
                    event = Webhook(secret).verify(body, headers)
                    break
                except WebhookVerificationError:
                    continue
            if event is None:
                self.bad_signatures += 1
                self.requests.append({"id": msg_id, "status": 400})
                return 400
            if self.refuse is not None:
                self.requests.append({"id": msg_id, "status": self.refuse})
                return self.refuse
            if self.fail_first > 0:
                self.fail_first -= 1
                self.requests.append({"id": msg_id, "status": 503})
                return 503
            if msg_id not in self.processed:  # deduplicate by webhook-id
                self.processed[msg_id] = json.loads(body)
            self.requests.append({"id": msg_id, "status": 200, "headers": headers, "at": time.time()})
            return 200

    def events(self) -> list[dict]:
        with self.lock:
            return list(self.processed.values())

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def add_endpoint(api, receiver: VerifyingReceiver) -> dict:
    """Register `receiver` as an endpoint of `api`'s tenant; it verifies with the secret the API returns."""
    status, body = api.json("POST", "/api/v1/webhooks/endpoints", {"url": receiver.url})
    assert status == 201, body
    receiver.secrets.append(body["secret"])
    return body


def deliveries(conn, endpoint_id: str) -> list[dict]:
    """The endpoint's deliveries: state, attempts, `webhook-id`, and the attempt numbers logged, in order."""
    return conn.execute(
        "SELECT d.id::text, d.state, d.attempts, 'msg_' || replace(d.event_id::text, '-', '') AS webhook_id,"
        " (SELECT array_agg(a.attempt ORDER BY a.id) FROM webhook_attempts a WHERE a.delivery_id = d.id) AS logged"
        " FROM webhook_deliveries d WHERE d.endpoint_id = %s", (endpoint_id,)).fetchall()
