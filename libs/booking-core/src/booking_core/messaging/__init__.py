"""What travels on the queues: the contracts (queue, actor, payload), the outbox that carries them out of
a Postgres transaction, the ids a message holds (untrusted) and the one permanent error an actor raises."""
