"""Real servers started from Python packages, for `bookingctl up` and for tests.

A library, not a service: `booking_core`'s tests, the services' tests and the
local runner all start their Postgres, Redis and SMTP sink from here, without
importing one another.
"""

from booking_embedded.ports import free_port, listening_inodes, reserve_port
from booking_embedded.process import Child, linux_only_problem, stop_together
from booking_embedded.servers import EmbeddedPostgres, EmbeddedRedis, EmbeddedSmtp, wait_for_port

__all__ = ["Child", "EmbeddedPostgres", "EmbeddedRedis", "EmbeddedSmtp", "free_port", "linux_only_problem",
           "listening_inodes", "reserve_port", "stop_together", "wait_for_port"]
