"""The measured pod start latency (creation to the first worker process's boot): the pure part."""

from __future__ import annotations

from booking_scaling.podload import PodLoad
from queue_autoscaler.pod_start import MAX_SECONDS, SAMPLES, StartLatencies


def booted(at_s: float | None) -> PodLoad:
    return PodLoad(in_flight=0, last_work_ms=None, workers=1, booted_ms=None if at_s is None else int(at_s * 1000))


def test_each_pod_is_measured_once_and_the_estimate_is_the_median():
    starts = StartLatencies()
    assert starts.estimate() is None
    loads = {"a": booted(112.0), "b": booted(140.0), "c": booted(130.0)}
    assert starts.observe({"a": 100.0, "b": 100.0, "c": 100.0}, loads) == [12.0, 40.0, 30.0]
    assert starts.estimate() == 30.0
    assert starts.unseen(loads) == set()
    assert starts.observe({"a": 100.0, "b": 100.0, "c": 100.0}, loads) == []  # not measured twice


def test_a_pod_not_listed_is_not_looked_for_again_and_gone_pods_are_forgotten():
    starts = StartLatencies()
    loads = {"other-workload": booted(50.0), "no-boot-recorded": booted(None)}
    assert starts.unseen(loads) == {"other-workload"}
    assert starts.observe({}, loads) == []
    assert starts.unseen(loads) == set() and starts.estimate() is None
    starts.observe({}, {})
    assert starts.seen == set()


def test_impossible_latencies_are_discarded():
    starts = StartLatencies()
    loads = {"clock-behind": booted(90.0), "restarted-long-after": booted(100.0 + MAX_SECONDS + 1), "ok": booted(105.0)}
    assert starts.observe({name: 100.0 for name in loads}, loads) == [5.0]


def test_only_the_last_pods_count():
    starts = StartLatencies()
    for i in range(SAMPLES):
        starts.observe({f"slow-{i}": 0.0}, {f"slow-{i}": booted(100.0)})
    for i in range(SAMPLES):
        starts.observe({f"fast-{i}": 0.0}, {f"fast-{i}": booted(10.0)})
    assert starts.estimate() == 10.0
