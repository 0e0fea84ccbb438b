"""`bookingctl webhooks listen`: a developer's local receiver, like `stripe listen`.

It adds an endpoint for the tenant pointing at a receiver on 127.0.0.1, prints
every delivery it gets after verifying its signature with the Standard
Webhooks reference library (`standardwebhooks`), optionally forwards it
unchanged (body and webhook-* headers) to --forward-to and answers with that
answer's status, and deletes the endpoint when stopped (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from booking_core.model.text import printable

#: Headers passed on to --forward-to.
FORWARDED = ("webhook-id", "webhook-timestamp", "webhook-signature", "traceparent", "content-type")
MAX_BODY = 1024 * 1024


class Listener:
    """A receiver on 127.0.0.1 that verifies, prints and (optionally) forwards each delivery."""

    def __init__(self, secret: str, *, port: int = 0, forward_to: str | None = None, out: TextIO = sys.stdout):
        self.webhook = Webhook(secret)
        self.forward_to = forward_to
        self.out = out
        self.lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_response(413)
                    self.end_headers()
                    return
                status = listener.receive(self.rfile.read(length), {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"

    def _print(self, line: str) -> None:
        with self.lock:
            print(line, file=self.out, flush=True)

    def receive(self, body: bytes, headers: dict[str, str]) -> int:
        # Whoever can reach the port sends these headers: escaped, so a rejected request's id cannot
        # move the cursor or recolour the developer's terminal.
        msg_id = printable(headers.get("webhook-id", "?")[:60])
        try:
            event = self.webhook.verify(body, headers)
        except WebhookVerificationError as exc:
            self._print(f"REJECTED {msg_id}: {printable(str(exc))}")
            return 401
        data = event.get("data") or {}
        self._print(f"{event.get('timestamp')}  {event.get('type')}  {msg_id}  booking={data.get('booking_id')}"
                    f"  sequence={data.get('sequence')}\n  {json.dumps(data, sort_keys=True)}")
        if not self.forward_to:
            return 200
        request = urllib.request.Request(self.forward_to, data=body, method="POST",
                                         headers={k: v for k, v in headers.items() if k in FORWARDED})
        try:
            with urllib.request.urlopen(request, timeout=15) as r:  # noqa: S310 (the developer's own URL)
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError as e:
            self._print(f"  forward to {self.forward_to} failed: {e}")
            return 502
        self._print(f"  forwarded to {self.forward_to}: {status}")
        return status

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cmd_listen(args, s) -> int:
    """Add the endpoint, serve until Ctrl-C, then delete it."""
    from booking_core import db
    from booking_core.ops.webhooks import _tenant
    from booking_core.webhooks import endpoints
    from booking_core.webhooks.sealing import Sealer

    sealer = Sealer(list(s.webhooks_keys))
    with db.connect(s.database_url, autocommit=True) as conn:
        tenant = _tenant(conn, args.tenant)
        # The secret is only known after the endpoint exists, and the URL only once the port is bound:
        # bind first (port 0 picks a free one), then create, then start verifying with its secret.
        listener = Listener("whsec_" + "A" * 32, port=args.port, forward_to=args.forward_to)
        fields = endpoints.check({"url": listener.url, "description": "bookingctl webhooks listen",
                                  "event_types": args.event_type or []}, partial=False,
                                 allowed=s.webhooks_allowed_networks)
        row, secret = endpoints.create(conn, sealer, tenant, fields)
    listener.webhook = Webhook(secret)
    print(f"Listening on {listener.url} for tenant {args.tenant}'s events (endpoint {row['id']});"
          f" signatures verified with standardwebhooks.{' Forwarding to ' + args.forward_to if args.forward_to else ''}"
          "\nPress Ctrl-C to stop (the endpoint is then deleted).", flush=True)
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        listener.server.server_close()
        with db.connect(s.database_url, autocommit=True) as conn:
            endpoints.delete(conn, tenant, row["id"])
    return 0


def add_listen(wsub) -> None:
    from booking_core.webhooks.payload import EVENT_TYPES

    p = wsub.add_parser("listen", help="a local receiver that verifies and prints each delivery (like stripe listen)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--forward-to", metavar="URL", help="also POST each delivery, unchanged, to this URL")
    p.add_argument("--event-type", action="append", choices=EVENT_TYPES, help="only these (repeat); default all")
    p.set_defaults(func=cmd_listen)
