"""The autoscaling decision core, shared by the kopf operator and `bookingctl up`.

Pure: `decide()` turns a backlog reading, the current replica count, a
`Policy`, the remembered `ScalerState` and the time into a `Decision`.  Reading
Redis and applying the result are the callers' business.
"""

from booking_core.scaling.backlog import Backlog
from booking_core.scaling.decision import Decision, ScalerState, decide
from booking_core.scaling.policy import Policy, PolicyError

__all__ = ["Backlog", "Decision", "Policy", "PolicyError", "ScalerState", "decide"]
