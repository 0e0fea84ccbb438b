"""`bookingctl up`'s supervisor scales worker processes with the operator's decision core."""

from __future__ import annotations

import pytest

from booking_scaling.policy import Policy
from e2e_helpers import wait_until

pytestmark = pytest.mark.e2e

FAST = dict(polling_interval=0.5, stabilization_window_seconds=4, cooldown_period=5, scale_down_max_step=1)


def test_a_burst_of_invoices_grows_the_pool_then_it_shrinks_back(make_platform, api_of):
    platform = make_platform(autoscale={
        "email": Policy(min_replica_count=1, max_replica_count=1, **FAST),
        "invoice": Policy(min_replica_count=1, max_replica_count=3, target_backlog_per_replica=5, **FAST),
        "audit": Policy(min_replica_count=1, max_replica_count=1, **FAST),
    })
    api = api_of(platform)
    assert platform.pool("invoice") == ["invoice-worker-1"]
    ids = [api.book(name=f"Burst {i}", email=f"burst{i}@example.com")["id"] for i in range(40)]

    # More invoice processes start while the backlog is high ...
    grown = wait_until(lambda: len(platform.pool("invoice")) >= 2 and platform.pool("invoice"), timeout=30,
                       what="a second invoice worker")
    assert all(platform.children[n].alive() for n in grown)
    # A decision to grow it, still in the stabilization window (4 s): the last decision itself may
    # already be the next round's hold by the time this thread runs on a busy machine.
    assert max(r for _, r in platform.autoscaler.pools["invoice"].state.recommendations) >= 2
    # ... the work is done, once each ...
    for booking_id in ids:
        api.wait_states(booking_id, {"invoice": "done"}, timeout=120)
    # ... and after the stabilization window the pool is back to one process, by SIGTERM (the idlest
    # go, so the one left need not be the first).
    wait_until(lambda: len(platform.pool("invoice")) == 1 and not platform.retiring, timeout=60,
               what="the invoice pool to shrink back to one process")
    assert [n for n in platform.children if n.startswith("invoice-worker-")] == platform.pool("invoice")
    assert len(platform.pool("email")) == 1 and len(platform.pool("audit")) == 1


@pytest.mark.parametrize("leads", [(30, 700), (30, 30)], ids=["different-leads", "one-lead"])
def test_each_pool_counts_delayed_messages_due_within_its_own_lead(settings, leads):
    import dramatiq

    from booking_core.worker.broker import make_broker
    from bookingctl.autoscale import Autoscaler

    broker = make_broker(settings)
    for queue in ("email", "invoice"):  # a retry due in 10 minutes, and one due in 5 s, on each
        for delay in (600_000, 5_000):
            broker.enqueue(dramatiq.Message(queue_name=queue, actor_name="noop", args=(), kwargs={}, options={}),
                           delay=delay)
    invoice_lead, email_lead = leads
    scaler = Autoscaler({"invoice": Policy(delayed_lead_seconds=invoice_lead),
                         "email": Policy(delayed_lead_seconds=email_lead)}, settings.redis_url,
                        settings.redis_namespace)
    readings = scaler.read(list(scaler.pools.values()))
    scaler.reader.client.close()
    broker.close()
    assert readings["invoice"].delayed == readings["email"].delayed == 2
    assert readings["invoice"].delayed_due == 1
    assert readings["email"].delayed_due == (2 if email_lead > 600 else 1)
