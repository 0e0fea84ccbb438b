"""Queue depth read from Dramatiq's Redis keys in one atomic snapshot.

Dramatiq's Redis broker keeps, per queue `q` in namespace `ns`:
`ns:q` (ready list), `ns:q.DQ` (delayed list: retries waiting out their
backoff), `ns:__acks__.<worker>.q` (fetched, not yet acked: in flight, one set
per worker listed in `ns:__heartbeats__`; a dead worker's set counts until
Dramatiq requeues it), and `ns:q.XQ` (dead letters).  Messages a worker has
fetched from `q.DQ` and holds until their eta are delayed, not in flight.
The age of the oldest ready message comes from its body's timestamp.
One Lua script reads all of it, so the four numbers are consistent.  The ops
endpoint, the metrics and the autoscaler all use this reader.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import redis

_SNAPSHOT_LUA = """
local ns = ARGV[1]
local now = redis.call('time')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local workers = redis.call('zrange', ns .. ':__heartbeats__', 0, -1)
local out = {}
for i = 2, #ARGV do
  local q = ARGV[i]
  local inflight, held = 0, 0
  for _, w in ipairs(workers) do
    inflight = inflight + redis.call('scard', ns .. ':__acks__.' .. w .. '.' .. q)
    held = held + redis.call('scard', ns .. ':__acks__.' .. w .. '.' .. q .. '.DQ')
  end
  -- Dramatiq pushes on the right and fetches from the left: index 0 is the oldest.
  local age = 0
  local head = redis.call('lindex', ns .. ':' .. q, 0)
  if head then
    local body = redis.call('hget', ns .. ':' .. q .. '.msgs', head)
    if body then
      local ok, msg = pcall(cjson.decode, body)
      if ok and type(msg) == 'table' and tonumber(msg.message_timestamp) then
        age = math.max(0, now_ms - tonumber(msg.message_timestamp))
      end
    end
  end
  out[#out + 1] = {
    redis.call('llen', ns .. ':' .. q),
    inflight,
    redis.call('llen', ns .. ':' .. q .. '.DQ') + held,
    redis.call('zcard', ns .. ':' .. q .. '.XQ'),
    age,
  }
end
return out
"""


@dataclass(frozen=True)
class QueueDepth:
    """One queue's backlog at one instant."""

    queue: str
    ready: int
    in_flight: int
    delayed: int
    dead: int
    #: How long the oldest ready message has waited, in milliseconds (0 when none).
    oldest_ready_age_ms: int = 0

    @property
    def backlog(self) -> int:
        """Work not yet finished: ready + in flight + delayed (dead letters excluded)."""
        return self.ready + self.in_flight + self.delayed

    def as_dict(self) -> dict:
        return asdict(self)


class QueueReader:
    """Reads QueueDepth for several queues with one registered Lua script."""

    def __init__(self, client: redis.Redis, namespace: str = "dramatiq"):
        self.client = client
        self.namespace = namespace
        self._script = client.register_script(_SNAPSHOT_LUA)

    def snapshot(self, queues: tuple[str, ...] | list[str]) -> list[QueueDepth]:
        """Depth of every queue in `queues`, read atomically."""
        rows = self._script(keys=[], args=[self.namespace, *queues])
        return [QueueDepth(q, *map(int, row)) for q, row in zip(queues, rows, strict=True)]
