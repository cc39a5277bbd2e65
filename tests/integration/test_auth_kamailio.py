"""The auth layer against a real challenging presence server: Kamailio 5.6 with
auth + auth_db, users in its sqlite `subscriber` table.

The test plays the subscriber by hand over UDP (the engine is not wired to the auth
layer yet): it builds each SUBSCRIBE with sip.message, lets ClientAuth answer the
401, and answers Kamailio's NOTIFYs. Kamailio runs with nonce_count=1, so a refresh
that reuses the nonce with nc=00000002 is checked by the real server.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from presence_b2b.shard.auth import (
    AuthRefusal,
    AuthRetry,
    ClientAuth,
    RefusalReason,
    set_auth_headers,
)
from presence_b2b.sip.digest import ha1_of, parse_challenges, parse_credentials
from presence_b2b.sip.headers import parse_name_addr
from presence_b2b.sip.message import Request, Response, parse_message

from presence_b2b.credentials import store_from_mapping
from tests.peers.kamailio import AuthUser, KamailioAuth, KamailioPresenceServer, peers_missing
from tests.peers.ports import LOOPBACK

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(peers_missing() is not None, reason=str(peers_missing())),
]

REALM = "presence.test"
PLAIN_USER, PLAIN_PASSWORD = "bob", "bob-plain-pw"
HA1_USER, HA1_PASSWORD = "carol", "carol-pw-only-as-ha1"


@dataclass
class HandUac:
    """A subscriber driven by hand: one UDP socket, requests built from sip.message."""

    kamailio: KamailioPresenceServer
    user: str
    sock: socket.socket = field(init=False)
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    cseq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    remote_tag: str = ""
    remote_target: str = ""

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(5.0)

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def subscribe(self, expires: int = 60) -> Request:
        """The next SUBSCRIBE of the dialog: initial until a 200 gave the To tag."""
        k = self.kamailio
        presentity = f"sip:alice@{k.host}"
        to = f"<{presentity}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        return Request(
            "SUBSCRIBE",
            self.remote_target or f"sip:alice@{k.host}:{k.port}",
            [
                ("Via", f"SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{uuid.uuid4().hex}"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{self.user}@{k.host}>;tag={self.tag}"),
                ("To", to),
                ("Call-ID", self.call_id),
                ("CSeq", f"{next(self.cseq)} SUBSCRIBE"),
                ("Contact", f"<sip:{self.user}@{LOOPBACK}:{self.port}>"),
                ("Event", "presence"),
                ("Accept", "application/pidf+xml"),
                ("Expires", str(expires)),
            ],
        )

    def retry(self, request: Request, outcome: AuthRetry) -> Request:
        """The challenged request again: new branch and CSeq, the manager's headers."""
        again = self.subscribe(int(request.get("Expires") or "60"))
        set_auth_headers(again, outcome.headers)
        return again

    def send(self, request: Request) -> Response:
        """Send a SUBSCRIBE; answer NOTIFYs that cross it; return its final response."""
        self.sock.sendto(request.to_bytes(), (self.kamailio.host, self.kamailio.port))
        while True:
            message = self._receive()
            if isinstance(message, Response) and message.status >= 200:
                if message.status < 300 and not self.remote_tag:
                    self.remote_tag = parse_name_addr(message.get("To") or "").tag or ""
                    self.remote_target = parse_name_addr(message.get("Contact") or "").uri
                return message
            if isinstance(message, Request):
                self._answer(message)

    def wait_notify(self) -> Request:
        """The next NOTIFY, answered with 200."""
        while True:
            message = self._receive()
            if isinstance(message, Request) and message.method == "NOTIFY":
                self._answer(message)
                return message

    def _receive(self) -> Request | Response:
        data, _ = self.sock.recvfrom(65535)
        return parse_message(data)

    def _answer(self, request: Request) -> None:
        names = ("Via", "From", "To", "Call-ID", "CSeq")
        ok = Response(200, "OK", [(n, v) for n, v in request.headers if n in names])
        via = request.get("Via") or ""
        sent_by = via.split()[1].split(";")[0]
        host, _, port = sent_by.partition(":")
        self.sock.sendto(ok.to_bytes(), (host, int(port or "5060")))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["plain-md5", "ha1-md5", "plain-sha256"])
def server(request: pytest.FixtureRequest) -> Iterator[KamailioPresenceServer]:
    """Kamailio reading bob's plain password (challenging with MD5 or SHA-256), or
    carol's precomputed MD5 HA1 only."""
    storage, _, algorithm = request.param.partition("-")
    users = (
        (AuthUser(HA1_USER, ha1=ha1_of("MD5", HA1_USER, REALM, HA1_PASSWORD)),)
        if storage == "ha1"
        else (AuthUser(PLAIN_USER, password=PLAIN_PASSWORD),)
    )
    auth = KamailioAuth(
        users,
        realm=REALM,
        storage="ha1" if storage == "ha1" else "plain",
        algorithm="SHA-256" if algorithm == "sha256" else "MD5",
    )
    with KamailioPresenceServer(auth=auth) as k:
        yield k


def credentials_for(server: KamailioPresenceServer, user: str) -> dict[str, str]:
    """Our side of the secret: bob's password, carol's HA1 (never her password)."""
    subscriber = f"sip:{user}@{server.host}"
    if user == HA1_USER:
        return {
            "subscriber": subscriber,
            "realm": REALM,
            "ha1_md5": ha1_of("MD5", HA1_USER, REALM, HA1_PASSWORD),
        }
    return {"subscriber": subscriber, "password": PLAIN_PASSWORD}


def user_of(server: KamailioPresenceServer) -> str:
    assert server.auth is not None
    return server.auth.users[0].username


def test_subscribe_gets_401_then_200_and_a_notify(server: KamailioPresenceServer) -> None:
    user = user_of(server)
    uac = HandUac(server, user)
    auth = ClientAuth(
        f"sip:{user}@{server.host}",
        store_from_mapping({"credential": [credentials_for(server, user)]}),
        random_bytes=os.urandom,
    )
    try:
        first = uac.subscribe()
        challenge = uac.send(first)
        assert challenge.status == 401, server.log_tail()
        (offered,) = parse_challenges(challenge.get_all("WWW-Authenticate"))
        assert server.auth is not None
        assert (offered.realm, offered.qop) == (REALM, ("auth",))
        assert offered.algorithm == server.auth.algorithm

        outcome = auth.on_response(first, challenge)
        assert isinstance(outcome, AuthRetry), outcome
        ok = uac.send(uac.retry(first, outcome))
        assert ok.status == 200, server.log_tail()
        notify = uac.wait_notify()
        assert (notify.get("Subscription-State") or "").startswith("active")

        # The refresh reuses the nonce: nc=00000002, no second challenge.
        refresh = uac.subscribe()
        set_auth_headers(refresh, auth.authorize(refresh))
        assert parse_credentials(refresh.get("Authorization") or "").params["nc"] == "00000002"
        assert uac.send(refresh).status == 200, server.log_tail()
        uac.wait_notify()

        unsubscribe = uac.subscribe(expires=0)
        set_auth_headers(unsubscribe, auth.authorize(unsubscribe))
        assert uac.send(unsubscribe).status == 200, server.log_tail()
        assert (uac.wait_notify().get("Subscription-State") or "").startswith("terminated")
    finally:
        uac.close()


def test_a_wrong_password_is_refused_after_one_retry(server: KamailioPresenceServer) -> None:
    user = user_of(server)
    uac = HandUac(server, user)
    wrong = {"subscriber": f"sip:{user}@{server.host}", "password": "not-the-password"}
    auth = ClientAuth(
        wrong["subscriber"], store_from_mapping({"credential": [wrong]}), random_bytes=os.urandom
    )
    try:
        first = uac.subscribe()
        outcome = auth.on_response(first, uac.send(first))
        assert isinstance(outcome, AuthRetry), outcome
        retry = uac.retry(first, outcome)
        refused = auth.on_response(retry, uac.send(retry))
        assert isinstance(refused, AuthRefusal), refused
        assert (refused.reason, refused.code, refused.realm) == (
            RefusalReason.REJECTED,
            401,
            REALM,
        )
    finally:
        uac.close()
