"""altdub.outbound.http.post against a real receiver on loopback: pinned address, no redirects, a hard timeout."""

from __future__ import annotations

import ipaddress

from altdub.outbound.addresses import Target, resolve
from altdub.outbound.http import post
from tests.receiver import REDIRECT_PATH, Receiver

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _target(receiver: Receiver, host: str = "hooks.example.com") -> Target:
    """The receiver's URL under a name nobody resolves: only a connection to the pinned address reaches it."""
    return Target(f"http://{host}:{receiver.port}/hooks?x=1", "http", host, receiver.port, LOOPBACK)


def test_the_connection_goes_to_the_checked_address_with_the_url_s_host(receiver: Receiver) -> None:
    attempt = post(_target(receiver), b'{"a":1}', {"altdub-signature": "t=1,v1=00"}, timeout=5)
    assert attempt.delivered and attempt.status_code == 204 and attempt.error is None
    assert attempt.latency_ms >= 0
    (got,) = receiver.received()
    assert (got.method, got.path, got.body) == ("POST", "/hooks?x=1", b'{"a":1}')
    assert got.headers["host"] == f"hooks.example.com:{receiver.port}"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["altdub-signature"] == "t=1,v1=00"


def test_a_redirect_is_an_answer_not_followed(receiver: Receiver) -> None:
    receiver.redirect(302)
    attempt = post(_target(receiver), b"{}", {}, timeout=5)
    assert (attempt.status_code, attempt.delivered, attempt.error) == (302, False, "answered 302")
    receiver.redirect(307)
    assert post(_target(receiver), b"{}", {}, timeout=5).status_code == 307
    assert receiver.received(REDIRECT_PATH) == []
    assert [r.path for r in receiver.received()] == ["/hooks?x=1", "/hooks?x=1"]


def test_a_receiver_that_does_not_answer_in_time_is_an_error(receiver: Receiver) -> None:
    receiver.hang()
    attempt = post(_target(receiver), b"{}", {}, timeout=0.5)
    receiver.answer(204)
    assert attempt.status_code is None and not attempt.delivered
    assert attempt.error == "no answer within 0.5 s"


def test_a_non_2xx_answer_is_not_delivered(receiver: Receiver) -> None:
    for status in (500, 404, 410, 200):
        receiver.answer(status)
        attempt = post(_target(receiver), b"{}", {}, timeout=5)
        assert attempt.status_code == status
        assert attempt.delivered == (status == 200)


def test_a_closed_port_is_an_error_with_the_reason(receiver: Receiver) -> None:
    target = _target(receiver)
    receiver.stop()
    attempt = post(target, b"{}", {}, timeout=5)
    assert attempt.status_code is None and attempt.error is not None
    assert "ConnectError" in attempt.error


def test_an_ipv6_address_is_bracketed_in_the_url_and_the_host_header() -> None:
    receiver = Receiver("::1").start()
    try:
        target = resolve(receiver.url("/v6"), allow_private=True)
        assert target.address == ipaddress.ip_address("::1")
        attempt = post(target, b"{}", {}, timeout=5)
        assert attempt.status_code == 204, attempt
        (got,) = receiver.received()
        assert got.headers["host"] == f"[::1]:{receiver.port}"
    finally:
        receiver.stop()
