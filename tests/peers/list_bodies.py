"""Bodies a resource list server (RFC 4662) sends: RLMI roots, PIDF parts and
the multipart/related envelope, for the tests of every layer that reads them."""

from __future__ import annotations

RLMI_NS = "urn:ietf:params:xml:ns:rlmi"
LIST = "sip:adam-friends@pres.example.com"


def rlmi(version: int, full: bool, resources: str, uri: str = LIST) -> bytes:
    state = "true" if full else "false"
    return (
        f'<?xml version="1.0"?><list xmlns="{RLMI_NS}" uri="{uri}" version="{version}"'
        f' fullState="{state}">{resources}</list>'
    ).encode()


def resource(
    uri: str, instance: str = "", state: str = "active", cid: str = "", **extra: str
) -> str:
    if not instance:
        return f'<resource uri="{uri}"/>'
    attrs = "".join(f' {k}="{v}"' for k, v in extra.items())
    cid_attr = f' cid="{cid}"' if cid else ""
    return (
        f'<resource uri="{uri}"><instance id="{instance}" state="{state}"{cid_attr}{attrs}/>'
        "</resource>"
    )


def pidf(entity: str, basic: str = "open") -> bytes:
    return (
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">'
        f'<tuple id="t"><status><basic>{basic}</basic></status></tuple></presence>'
    ).encode()


def multipart(
    root: bytes, *parts: tuple[str, str, bytes], boundary: str = "50UBfW7LSCVLtggUPe5z"
) -> tuple[str, bytes]:
    """(Content-Type, body) of a list NOTIFY: the RLMI root, then (cid, type, body) parts."""
    out = [
        b"--" + boundary.encode(),
        b"Content-Transfer-Encoding: binary",
        b"Content-ID: <nXYxAE@pres.example.com>",
        b"Content-Type: application/rlmi+xml;charset=UTF-8",
        b"",
        root,
    ]
    for cid, ctype, content in parts:
        out += [
            b"--" + boundary.encode(),
            f"Content-ID: <{cid}>".encode(),
            f"Content-Type: {ctype}".encode(),
            b"",
            content,
        ]
    out.append(b"--" + boundary.encode() + b"--")
    content_type = (
        'multipart/related;type="application/rlmi+xml";'
        f'start="<nXYxAE@pres.example.com>";boundary="{boundary}"'
    )
    return content_type, b"\r\n".join(out) + b"\r\n"
