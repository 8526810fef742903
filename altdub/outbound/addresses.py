"""Where a user's URL may lead: public unicast addresses only (no SSRF into the service's own network).

A URL is checked twice: when it is given (a clear 422) and when it is connected to, against the
addresses it resolves to then; the connection is made to the address that was checked, so a DNS
answer that changes in between (rebinding) cannot redirect it.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_CHARS = 2000
_SCHEMES = {"http": 80, "https": 443}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(ValueError):
    """The URL is malformed, does not resolve, or leads to an address altdub must not reach."""


@dataclass(frozen=True)
class Target:
    """A URL split for a pinned connection: ``address`` is what was checked; ``host`` goes in Host and SNI."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached (None: a public unicast address)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        elif address.sixtofour is not None:  # 2002:7f00:1:: is sent, wrapped, to 127.0.0.1
            inner = refusal(address.sixtofour)
            if inner is not None:
                return f"6to4 of {address.sixtofour}, {inner}"
    for kind, is_it in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if is_it:
            return f"{'an' if kind == 'unspecified' else 'a'} {kind} address"
    if not address.is_global:  # shared address space (100.64/10) and the like
        return "not a public address"
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL without credentials; AddressRefused saying what is wrong."""
    if len(url) > MAX_URL_CHARS:
        raise AddressRefused(f"longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"not a URL ({exc})") from exc
    if parts.scheme not in _SCHEMES:
        raise AddressRefused("must start with http:// or https://")
    if not parts.hostname:
        raise AddressRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("must not carry credentials")
    return parts.scheme, parts.hostname, port or _SCHEMES[parts.scheme]


def resolve(url: str, *, allow_private: bool) -> Target:
    """The address to connect to for ``url``: every address its host resolves to must be allowed.

    Refusing when any address is private (not only the first) closes the door on hosts that answer
    with a public and a private address and let the connection pick.
    """
    scheme, host, port = split_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"its host {host} does not resolve") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise AddressRefused(f"its host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise AddressRefused(
                    f"its host {host} resolves to {address}, {reason}; set ALTDUB_WEBHOOK_ALLOW_PRIVATE=true "
                    "to allow it"
                )
    return Target(url, scheme, host, port, addresses[0])
