"""HTML pages of the platform (the customer's progress page, the ops console): one Jinja2 environment.

Their headers are booking_core.web.headers'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jinja2


def templates(package: str, folder: str, *, filters: Mapping[str, Callable] | None = None) -> jinja2.Environment:
    """The Jinja2 environment of a package's templates: autoescaped (every client field is untrusted
    text), and strict (a missing variable is an error, not an empty string on a live page)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader(package, folder), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(filters or {})
    return env
