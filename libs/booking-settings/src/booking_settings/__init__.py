"""Typed, frozen settings read once from the environment (`fields`), and the boot that refuses bad ones (`boot`)."""
