"""A booking task's life after the accept path: its states, its retries through database outages, its dead
letters, and sending it again (by a human's retry, a requeue, or the reconciler's republish)."""
