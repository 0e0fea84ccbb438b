"""A client that drops its stream ends it quietly and frees it at once (the real `booking-events` process).

Anyone with a progress link can open and drop streams in a loop: each drop
once cost an `ERROR aiohttp.server` traceback (about 2 KiB) in the service's
log, and the stream's subscription stayed until its next heartbeat failed.
"""

from __future__ import annotations

import socket
import struct

import pytest

from e2e_helpers import wait_until

OPEN = "booking_events_open_streams"


def open_raw(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    """A stream on a plain socket, returned once its first event has arrived (so the server holds it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{head}\r\n".encode())
    seen = b""
    while b"event: task" not in seen:
        chunk = sock.recv(4096)
        assert chunk, f"closed before the first event: {seen[:300]!r}"
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200"), seen[:300]
    return sock


def drop(sock: socket.socket, *, reset: bool) -> None:
    """Close as a client does: a FIN (tab closed), or an RST (the network or the process died)."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("heartbeat_ms", [60_000, 200], ids=["long-heartbeat", "short-heartbeat"])
def test_dropped_streams_end_quietly_and_free_their_slots_at_once(events_process, make_booking, token, page_link,
                                                                  heartbeat_ms):
    # Given the real service, and a booking with 150 progress-page streams and 50 API streams open on it
    service = events_process(BOOKING_EVENTS_HEARTBEAT_MS=str(heartbeat_ms), BOOKING_EVENTS_MAX_STREAMS_PER_LINK="200",
                             BOOKING_EVENTS_MAX_STREAMS_PER_CLIENT="200")
    booking_id = make_booking()
    page = f"/status/{page_link(booking_id)}/events"
    api = f"/api/v1/bookings/{booking_id}/events"
    socks = [open_raw(service.port, page, {}) for _ in range(150)]
    socks += [open_raw(service.port, api, {"Authorization": f"Bearer {token}"}) for _ in range(50)]
    assert service.metric(OPEN) == 200
    # When every client goes away, half with a FIN and half with an RST
    for i, sock in enumerate(socks):
        drop(sock, reset=i % 2 == 1)
    # Then every stream is freed at once (not at its next heartbeat, a minute away in the first case) ...
    wait_until(lambda: service.metric(OPEN) == 0, timeout=10, what="the dropped streams to be freed")
    # ... and the log says nothing about it
    log = service.log()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]
