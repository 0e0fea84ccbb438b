"""The outbox relay: publishes committed outbox rows to Redis, then deletes them.

A service of its own, not a module of the API: the API, the workers and the
dead-letter commands all write outbox rows, and the relay needs only
`booking_core` (no web framework) to drain them.
"""

from outbox_relay.publish import publish_batch
from outbox_relay.relay import Relay

__all__ = ["Relay", "publish_batch"]
