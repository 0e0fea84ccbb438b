"""free_port picks ports no outgoing connection can be given, and never the same one twice."""

import socket

from booking_embedded import free_port, ports, reserve_port
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


def test_a_reserved_port_is_never_handed_out(monkeypatch):
    monkeypatch.setattr(ports, "_handed_out", set())  # this test's own registry
    low = candidates(ephemeral_range()[0])
    for port in low[:-1]:
        reserve_port(port)
    assert free_port() == low[-1]  # the only one left
