"""What the customer reads about each step: one function for the page and its live updates.

The server-rendered page and the stream for that page both call `step_view`,
so the words a customer sees with JavaScript off and on are the same.  The
task's raw `last_error` is never shown to the customer (it may name internal
hosts); the API's stream, for the tenant's own code, carries it.
"""

from __future__ import annotations

from booking_core.messaging.contracts import TASKS

LABELS = {"email": "Confirmation email", "invoice": "Invoice", "audit": "Audit record"}
_NOUNS = {"email": "your confirmation email", "invoice": "your invoice", "audit": "the audit record of your booking"}
STATE_WORDS = {"pending": "Waiting", "running": "In progress", "retrying": "Retrying", "done": "Done",
               "dead": "Needs attention"}
_VERBS = {"email": "sending", "invoice": "preparing", "audit": "recording"}


def message(task: str, state: str, attempts: int) -> str:
    """A sentence for a person, in plain words, for one step's state."""
    noun = _NOUNS[task]
    if state == "pending":
        return f"We will start {_VERBS[task]} {noun} in a moment."
    if state == "running":
        return f"We are {_VERBS[task]} {noun}."
    if state == "retrying":
        return f"We're retrying {noun} (attempt {attempts} did not go through). No action is needed."
    if state == "dead":
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return (f"We could not finish {noun} after {tries}. Our team has been alerted and "
                "will follow up; your booking itself is confirmed.")
    if task == "email":
        return "Your confirmation email has been sent."
    if task == "invoice":
        return "Your invoice is ready to download."
    return "Your booking is recorded in the audit trail."


def step_view(task: str, state: str, attempts: int) -> dict:
    """One step as the page shows it (and as the page's stream sends it)."""
    return {"task": task, "label": LABELS[task], "state": state, "state_text": STATE_WORDS[state],
            "attempts": attempts, "message": message(task, state, attempts)}


def steps(tasks: dict) -> list[dict]:
    """The three steps in order, from a booking's `tasks` as booking_core returns them."""
    out = []
    for task in TASKS:
        t = tasks.get(task, {})
        out.append(step_view(task, t.get("state", "pending"), t.get("attempts", 0)))
    return out
