"""Where a webhook may be sent: the SSRF guard.

A tenant chooses its endpoint's URL, so without a guard it could make the
platform call the cloud's metadata service (169.254.169.254), the cluster's
own services or the pod's loopback.  The host is resolved once and the request
goes to the address that was checked (a second lookup could answer differently:
DNS rebinding).  Refused unless BOOKING_WEBHOOKS_ALLOWED_NETWORKS names them:
loopback, private, link-local, multicast, reserved and unspecified addresses,
shared address space (100.64/10), and IPv4 addresses in IPv6 clothing
(IPv4-mapped, 6to4, NAT64 well-known prefix), judged as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


#: An endpoint URL: RFC 3986 characters only (an internationalised host in its xn-- form), http or https,
#: and no fragment (it is never sent).
URL_PATTERN = r"^https?://[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]+$"
_URL = re.compile(URL_PATTERN)
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$")


class Refused(ValueError):
    """The URL or its address is not one the platform sends webhooks to."""


def _embedded_v4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _public(addr: IPAddress) -> bool:
    if addr in _SHARED:
        return False
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified or not addr.is_global)


def check(addr: IPAddress | str, allowed: tuple[Network, ...] = ()) -> IPAddress:
    """`addr` if webhooks may go there, else Refused saying why."""
    addr = ipaddress.ip_address(addr) if isinstance(addr, str) else addr
    if any(addr.version == n.version and addr in n for n in allowed):
        return addr
    inner = _embedded_v4(addr)
    if inner is not None:
        if any(n.version == 4 and inner in n for n in allowed):
            return addr
        if not _public(inner):
            raise Refused(f"{addr} carries the non-public IPv4 address {inner}")
    if not _public(addr):
        raise Refused(f"{addr} is not a public address")
    return addr


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an endpoint URL, http or https only, without credentials; else Refused."""
    if not url.lower().startswith(("http://", "https://")):
        raise Refused("the scheme must be http or https")
    if not _URL.match(url):
        raise Refused("not a URL: use RFC 3986 characters only (percent-encode the others; an "
                      "internationalised host in its xn-- form)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"not a URL: {exc}") from None
    if not parts.hostname:
        raise Refused("the URL has no host")
    if not parts.netloc.rsplit("@", 1)[-1].startswith("[") and not _HOST.match(parts.hostname):
        raise Refused("not a host name")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL must not carry credentials")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int, allowed: tuple[Network, ...] = (), *, getaddrinfo=socket.getaddrinfo) -> IPAddress:
    """The first address of `host` the guard accepts; Refused when there is none.

    Every address is checked: a host that resolves to a public and a private
    address is refused, so a tenant cannot win by racing the resolver.
    """
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        return check(literal, allowed)
    try:
        infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"cannot resolve {host}: {exc}") from None
    found = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not found:
        raise Refused(f"{host} has no address")
    checked = [check(a, allowed) for a in found]
    return checked[0]
