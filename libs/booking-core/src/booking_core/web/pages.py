"""HTML pages of the platform (the customer's progress page, the ops console): headers and templates.

One definition of the security headers and of the Jinja2 environment, so the
pages differ only where they must: the progress page carries a capability
token in its URL and has no form (`form-action 'none'`, no Referer at all);
the console posts forms to itself and links within itself (`form-action
'self'`, `same-origin` Referer).  Everything else is the same: no inline
script or style, nothing from another origin, no framing (clickjacking of the
action buttons), no MIME sniffing, nothing kept in shared caches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jinja2


def security_headers(*, forms: bool) -> dict[str, str]:
    """The headers of every HTML page; `forms`: the page posts forms to its own origin."""
    form_action = "'self'" if forms else "'none'"
    return {
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                   "connect-src 'self'; object-src 'none'; base-uri 'none'; "
                                   f"form-action {form_action}; frame-ancestors 'none'",
        "Referrer-Policy": "same-origin" if forms else "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


#: A page without forms (the progress page: its URL holds a token).
SECURITY_HEADERS = security_headers(forms=False)
#: A page that posts forms to itself (the ops console).
FORM_SECURITY_HEADERS = security_headers(forms=True)


def templates(package: str, folder: str, *, filters: Mapping[str, Callable] | None = None) -> jinja2.Environment:
    """The Jinja2 environment of a package's templates: autoescaped (every client field is untrusted
    text), and strict (a missing variable is an error, not an empty string on a live page)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader(package, folder), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(filters or {})
    return env
