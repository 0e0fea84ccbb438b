"""The queue autoscaler: a kopf operator over booking_scaling."""
