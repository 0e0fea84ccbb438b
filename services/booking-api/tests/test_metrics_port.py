"""The API's metrics: served by the gunicorn master on a port of their own, never on the HTTP port.

Runs the real gunicorn with the real config (two workers, multiprocess mode) on the
session's Postgres and Redis: the HTTP port answers 404 at /metrics (an Ingress that
routes every path there exposes no metrics), and the metrics port sums both workers'
request counts and reads the pipeline gauges.
"""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from prometheus_client.parser import text_string_to_metric_families

from e2e_helpers import child_pids, wait_until


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET; HTTP errors are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> dict[tuple, float]:
    """{(name, sorted labels): value} of a Prometheus text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_http_port_has_no_metrics_and_the_metrics_port_sums_every_worker(gunicorn, db_conn):
    http_port, metrics_port, proc = gunicorn
    status, _ = get(f"http://127.0.0.1:{http_port}/metrics")
    assert status == 404
    # Concurrent requests, so both workers answer some of them.
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: get(f"http://127.0.0.1:{http_port}/no-such-page")[0], range(40)))
    assert statuses == [404] * 40

    status, text = get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    got = samples(text)
    unmatched = (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
    assert got[("booking_http_requests_total", unmatched)] == 41  # the /metrics probe and the 40
    outbox = db_conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"]
    assert got[("booking_outbox_messages", ())] == outbox
    assert got[("booking_pipeline_read_ok", (("source", "postgres"),))] == 1
    assert got[("booking_pipeline_read_ok", (("source", "redis"),))] == 1
    assert got[("booking_queue_messages", (("queue", "email"), ("state", "ready")))] == 0

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_a_worker_that_dies_keeps_its_counts_in_the_sum(gunicorn):
    """A replaced worker's counters stay in the total (multiprocess mode keeps dead workers' files)."""
    http_port, metrics_port, proc = gunicorn
    for _ in range(5):
        assert get(f"http://127.0.0.1:{http_port}/gone")[0] == 404
    pids = child_pids(proc.pid)
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    def answering() -> bool:
        try:  # each worker has its own listening socket: until a new one binds, connecting fails
            return get(f"http://127.0.0.1:{http_port}/gone")[0] == 404
        except OSError:
            return False

    wait_until(answering, timeout=30, interval=0.2, what="the replacement workers to answer")
    got = samples(get(f"http://127.0.0.1:{metrics_port}/metrics")[1])
    assert got[("booking_http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))] == 6


def test_the_paused_gauge_is_1_for_a_paused_queue_and_0_for_the_others(settings, db_conn):
    from prometheus_client import CollectorRegistry, generate_latest

    from booking_api.metrics_server import PipelineCollector
    from booking_core.queues import pauses

    reg = CollectorRegistry()
    reg.register(PipelineCollector(settings))
    db_conn.execute("DELETE FROM queue_pauses")
    try:
        pauses.pause(db_conn, "invoice", actor="test-operator")
        got = samples(generate_latest(reg).decode())
    finally:
        db_conn.execute("DELETE FROM queue_pauses")
    paused = {dict(labels)["queue"]: v for (name, labels), v in got.items() if name == "booking_queue_paused"}
    assert paused == {"email": 0, "invoice": 1, "audit": 0, "webhook": 0}
    after = samples(generate_latest(reg).decode())
    assert after[("booking_queue_paused", (("queue", "invoice"),))] == 0


def test_the_open_dead_letters_gauge_counts_the_postgres_records_per_queue(settings, db_conn):
    from prometheus_client import CollectorRegistry, generate_latest

    from booking_api.metrics_server import PipelineCollector
    from booking_core.tasks import deadletters

    reg = CollectorRegistry()
    reg.register(PipelineCollector(settings))
    expected = deadletters.open_by_queue(db_conn)
    got = samples(generate_latest(reg).decode())
    gauge = {dict(labels)["queue"]: v for (name, labels), v in got.items() if name == "booking_dead_letters_open"}
    assert gauge == expected and set(gauge) == {"email", "invoice", "audit", "webhook"}
    # One more open letter on the email queue shows at the next scrape (no Redis involved)
    letter = db_conn.execute(
        "INSERT INTO dead_letters (message_id, queue, actor, error)"
        " VALUES (gen_random_uuid(), 'email', 'send_confirmation_email', 'boom') RETURNING id").fetchone()
    try:
        again = samples(generate_latest(reg).decode())
        assert again[("booking_dead_letters_open", (("queue", "email"),))] == expected["email"] + 1
    finally:
        db_conn.execute("DELETE FROM dead_letters WHERE id = %s", (letter["id"],))
