"""altdub.outbound.addresses: which addresses a callback may reach, and what a host's DNS answer must hold.

``refusal`` is checked per address class; ``resolve`` on literal addresses and ``localhost`` uses the
real resolver (no DNS query leaves the machine: literals are parsed, localhost is in /etc/hosts). For
the DNS answers of named hosts, ``socket.getaddrinfo`` is replaced: that is the only way to have a
name answer with a public and a private address at once without a DNS server.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from altdub.outbound.addresses import MAX_URL_CHARS, AddressRefused, refusal, resolve, split_url

PUBLIC_V4, PUBLIC_V6 = "93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("100.64.0.1", "not a public address"),  # shared address space (carrier-grade NAT)
    ("::ffff:10.0.0.1", "private"),  # IPv4-mapped: the IPv4 address is what is reached
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("240.0.0.1", "private"),  # reserved, and in Python's private list
    ("192.0.2.1", "private"),  # documentation ranges: nobody's receiver
    ("2001:db8::1", "private"),
    ("fec0::1", "site-local"),  # deprecated, but still routed inside some networks
    ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1: the packets go to the IPv4 address inside
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo to the client 10.0.0.1
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_refusal_names_the_class_of_every_address_that_is_not_public(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason, (address, reason)


@pytest.mark.parametrize("address", [PUBLIC_V4, "8.8.8.8", "1.1.1.1", PUBLIC_V6, "2606:4700:4700::1111"])
def test_public_unicast_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


# --- URLs ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/hooks", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://example.com/", "http:// or https://"),
        ("example.com/hooks", "http:// or https://"),
        ("https://user:secret@example.com/hooks", "credentials"),
        ("https://user@example.com/hooks", "credentials"),
        ("https:///hooks", "no host"),
        ("https://example.com:99999/hooks", "not a URL"),
        ("https://example.com/" + "a" * MAX_URL_CHARS, "longer than"),
    ],
)
def test_split_url_refuses_what_is_not_a_plain_http_url(url: str, words: str) -> None:
    with pytest.raises(AddressRefused, match=words):
        split_url(url)


def test_split_url_fills_in_the_scheme_s_port() -> None:
    assert split_url("https://Example.COM/a?b=c") == ("https", "example.com", 443)
    assert split_url("http://example.com/") == ("http", "example.com", 80)
    assert split_url("http://[2606:4700::1]:8080/") == ("http", "2606:4700::1", 8080)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks",
        "http://localhost:8000/hooks",
        "http://[::1]/hooks",
        "http://10.1.2.3/",
        "http://172.16.5.4/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://0.0.0.0:8000/",
        "http://100.64.0.1/",
        "http://[::ffff:10.0.0.1]/",
        "http://2130706433/",  # 127.0.0.1 written as one number: the resolver reads it so
        "http://0x7f.1/",  # and in hex
    ],
)
def test_resolve_refuses_literal_and_local_hosts_with_the_real_resolver(url: str) -> None:
    with pytest.raises(AddressRefused, match="ALTDUB_WEBHOOK_ALLOW_PRIVATE"):
        resolve(url, allow_private=False)


def test_allow_private_accepts_loopback_and_pins_the_address() -> None:
    target = resolve("http://localhost:8123/hooks?x=1", allow_private=True)
    assert (target.scheme, target.host, target.port) == ("http", "localhost", 8123)
    assert target.address == ipaddress.ip_address("127.0.0.1")
    assert target.url == "http://localhost:8123/hooks?x=1"


def test_a_label_longer_than_dns_allows_does_not_resolve() -> None:
    with pytest.raises(AddressRefused, match="does not resolve"):
        resolve(f"https://{'a' * 64}.example.com/hooks", allow_private=False)


# --- DNS answers (getaddrinfo replaced) --------------------------------------------------------------------------


def _answer(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[tuple[str, int]]:
    """Make ``socket.getaddrinfo`` answer ``answers[host]`` (every other host: not found); the calls made."""
    calls: list[tuple[str, int]] = []

    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        calls.append((host, port))
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return calls


def test_a_host_with_only_public_addresses_is_pinned_to_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _answer(monkeypatch, {"hooks.example.com": [PUBLIC_V4, PUBLIC_V6, PUBLIC_V4]})
    target = resolve("https://hooks.example.com/altdub", allow_private=False)
    assert target.address == ipaddress.ip_address(PUBLIC_V4)
    assert (target.host, target.port) == ("hooks.example.com", 443)
    assert calls == [("hooks.example.com", 443)]


@pytest.mark.parametrize(
    "addresses",
    [
        [PUBLIC_V4, "10.0.0.7"],  # the private one second: a client trying them in order might reach it
        ["10.0.0.7", PUBLIC_V4],
        [PUBLIC_V4, PUBLIC_V6, "::1"],
        [PUBLIC_V6, "fe80::1%2"],  # a scoped link-local answer
        [PUBLIC_V4, "169.254.169.254"],
        [PUBLIC_V4, "::ffff:192.168.0.1"],
    ],
)
def test_a_host_is_refused_when_any_of_its_addresses_is_not_public(
    monkeypatch: pytest.MonkeyPatch, addresses: list[str]
) -> None:
    _answer(monkeypatch, {"mixed.example.com": addresses})
    with pytest.raises(AddressRefused, match=r"mixed\.example\.com resolves to") as refused:
        resolve("https://mixed.example.com/hooks", allow_private=False)
    bad = next(a for a in addresses if refusal(ipaddress.ip_address(a.split("%")[0])) is not None)
    assert str(ipaddress.ip_address(bad.split("%")[0])) in str(refused.value)
    assert resolve("https://mixed.example.com/hooks", allow_private=True).address == ipaddress.ip_address(
        addresses[0].split("%")[0]
    )


def test_a_host_that_does_not_resolve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, {})
    with pytest.raises(AddressRefused, match=r"nowhere\.example\.com does not resolve"):
        resolve("https://nowhere.example.com/hooks", allow_private=True)


def test_an_empty_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, {"empty.example.com": []})
    with pytest.raises(AddressRefused, match="does not resolve"):
        resolve("https://empty.example.com/hooks", allow_private=True)
