"""The autoscaling decision core, shared by the kopf operator and `bookingctl up`, and the Redis readers it needs.

Pure: `decision.decide()` turns a backlog reading (`backlog.Backlog`), the current
replica count, a `policy.Policy`, the remembered `decision.ScalerState` and the
time into a `decision.Decision`.  Reading Redis and applying the result are the
callers' business.

This package re-exports nothing, and must stay so: Dramatiq's worker processes
import it (`pausemirror`, `layout`), and a worker must not import
prometheus_client (which `pressure` does) before its process has booted, or
Dramatiq's Prometheus middleware finds it set up without the multiprocess
directory and the worker's metrics never reach its exposition process.
"""
