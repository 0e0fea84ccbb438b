"""free_port picks ports no outgoing connection can be given, and never the same one twice;
listening_inodes and wait_for_port see every socket a port listens on."""

import os
import socket
import time

import pytest

from booking_embedded import free_port, listening_inodes, ports, reserve_port, wait_for_port
from booking_embedded.ports import LOWEST, candidates, ephemeral_range


def test_the_ephemeral_range_is_read_from_the_kernel_format():
    assert ephemeral_range("32768\t60999\n") == (32768, 60999)
    assert ephemeral_range("garbage") == (32768, 60999)


def test_candidates_stop_below_the_ephemeral_range():
    assert candidates(32768) == range(LOWEST, 32768)
    assert not candidates(LOWEST)


def test_ports_are_outside_the_ephemeral_range_distinct_and_bindable():
    low, high = ephemeral_range()
    got = [free_port() for _ in range(300)]
    assert len(set(got)) == len(got)
    assert not [p for p in got if low <= p <= high]
    with socket.socket() as s:
        s.bind(("127.0.0.1", got[-1]))


def test_a_reserved_port_is_never_handed_out(monkeypatch, tmp_path):
    monkeypatch.setattr(ports, "_handed_out", set())  # this test's own registry
    monkeypatch.setattr(ports, "_claims", tmp_path / "claims")  # and no other process's claims
    low = candidates(ephemeral_range()[0])
    for port in low[:-1]:
        reserve_port(port)
    assert free_port() == low[-1]  # the only one left


def test_listening_sockets_are_counted_and_waited_for():
    """Two sockets share a port (SO_REUSEPORT, as gunicorn's workers do): both are seen, a third is waited for."""
    port = free_port()
    sockets = []
    try:
        for listening in (0, 1):
            s = socket.socket()
            sockets.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", port))
            assert len(listening_inodes(port)) == listening  # bound is not listening yet
            s.listen()
        assert len(listening_inodes(port)) == 2
        wait_for_port(port, timeout=5, listeners=2)
        with pytest.raises(TimeoutError, match="not 3 socket"):
            wait_for_port(port, timeout=0.5, listeners=3)
    finally:
        for s in sockets:
            s.close()
    assert listening_inodes(port) == set()


def test_a_port_another_process_picked_is_not_handed_out_until_its_claim_expires(monkeypatch, tmp_path):
    """Two pytest-xdist workers pick ports at once: one's pick, not bound yet, is not the other's."""
    monkeypatch.setattr(ports, "_claims", tmp_path / "claims")
    only = candidates(ephemeral_range()[0])[-1]
    monkeypatch.setattr(ports, "candidates", lambda low: range(only, only + 1))
    monkeypatch.setattr(ports, "_handed_out", set())
    assert free_port() == only
    monkeypatch.setattr(ports, "_handed_out", set())  # another process: it shares only the claims
    assert free_port() != only  # the kernel's choice, since the one candidate is claimed
    stale = time.time() - ports.CLAIM_SECONDS - 1
    os.utime(tmp_path / "claims" / str(only), (stale, stale))
    monkeypatch.setattr(ports, "_handed_out", set())
    assert free_port() == only
