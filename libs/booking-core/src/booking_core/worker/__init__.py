"""A Dramatiq worker process of the platform: its broker and middleware (`broker`), and what ties it to its
parent and its metrics process (`lifeline`, `exposition`)."""
