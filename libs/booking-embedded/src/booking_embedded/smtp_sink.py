"""An SMTP sink for local runs and tests: every accepted message becomes a file.

Real SMTP semantics, real socket: the email worker cannot tell it from a
mail server.  `--reject-recipients REGEX` answers 550 for matching recipients,
so permanent failures can be exercised too; `--delay SECONDS` holds each
message's DATA that long before the 250, so mail can be caught in flight.  Files are written atomically
(temp file, then rename) as `<dir>/<timestamp>-<random>.eml`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class SinkHandler:
    """aiosmtpd handler: refuse matching recipients, store the rest."""

    def __init__(self, mail_dir: Path, reject: re.Pattern | None, delay: float = 0.0):
        self.mail_dir = mail_dir
        self.reject = reject
        self.delay = delay

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject is not None and self.reject.search(address):
            return "550 5.1.1 Recipient address rejected: user unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        name = f"{time.time_ns()}-{secrets.token_hex(4)}.eml"
        tmp = self.mail_dir / f".{name}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        os.replace(tmp, self.mail_dir / name)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    """Run the sink until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="booking_embedded.smtp_sink", description=__doc__)
    parser.add_argument("--dir", required=True, type=Path, help="folder for received .eml files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--reject-recipients", default=None, help="regex of recipients to refuse with 550")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before accepting each message")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    reject = re.compile(args.reject_recipients) if args.reject_recipients else None
    controller = Controller(SinkHandler(args.dir, reject, args.delay), hostname=args.host, port=args.port)
    controller.start()
    print(f"smtp sink listening on {args.host}:{args.port}, writing to {args.dir}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
