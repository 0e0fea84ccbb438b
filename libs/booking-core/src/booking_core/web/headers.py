"""The security headers of every HTTP response of the platform, defined once.

The pages differ only where they must: the progress page carries a capability
token in its URL and has no form (`form-action 'none'`, no Referer at all);
the console posts forms to itself and links within itself (`form-action
'self'`, `same-origin` Referer).  Everything else is the same: no inline
script or style, nothing from another origin, no framing (clickjacking of the
action buttons), no MIME sniffing, nothing kept in shared caches.  JSON and
event streams (the API, booking-events' streams) get the part that applies to
any body: no sniffing, no framing, no active content; their caching is each
endpoint's own (the API's ETags).
"""

from __future__ import annotations

#: Every response that is not an HTML page (JSON, problem+json, event streams, PDFs).
BASE_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


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


#: A page without forms (the progress page: its URL holds a token).
SECURITY_HEADERS = security_headers(forms=False)
#: A page that posts forms to itself (the ops console).
FORM_SECURITY_HEADERS = security_headers(forms=True)
