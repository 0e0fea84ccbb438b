"""The autoscaling decision core, shared by the kopf operator and `bookingctl up`.

Pure: `decide()` turns a backlog reading, the current replica count, a
`Policy`, the remembered `ScalerState` and the time into a `Decision`.  Reading
Redis and applying the result are the callers' business.
"""

from booking_scaling.backlog import Backlog
from booking_scaling.decision import Decision, ScalerState, decide
from booking_scaling.policy import Policy, PolicyError
from booking_scaling.pressure import AcceptPath, LatencyBudget, LatencyReading, LatencyWatch, judge

__all__ = ["AcceptPath", "Backlog", "Decision", "LatencyBudget", "LatencyReading", "LatencyWatch", "Policy",
           "PolicyError", "ScalerState", "decide", "judge"]
