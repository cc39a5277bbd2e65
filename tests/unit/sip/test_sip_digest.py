"""Digest challenges and responses: RFC 7616 and RFC 2617 vectors, the parser's
tolerance and refusals, and secrets that never show."""

from __future__ import annotations

import pytest
from presence_b2b.sip.digest import (
    Challenge,
    DigestCredential,
    DigestError,
    Secret,
    algorithm_rank,
    authorization_value,
    digest_response,
    ha1_of,
    hash_hex,
    parse_challenges,
    parse_credentials,
)
from presence_b2b.sip.message import SipParseError

# RFC 7616 §3.9.1: the same nonce and opaque for both algorithms.
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_HEADER = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}", '
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
    f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
)
MUFASA = DigestCredential("Mufasa", Secret("Circle of Life"))


def _answer(challenge: Challenge, credential: DigestCredential = MUFASA) -> dict[str, str]:
    return digest_response(
        challenge, credential, method="GET", uri="/dir/index.html", cnonce=RFC7616_CNONCE
    )


def test_rfc7616_header_holds_two_challenges_in_order() -> None:
    sha, md5 = parse_challenges(RFC7616_HEADER)
    assert (sha.algorithm, md5.algorithm) == ("SHA-256", "MD5")
    assert sha.realm == md5.realm == "http-auth@example.org"
    assert sha.qop == ("auth", "auth-int")
    assert sha.opaque == RFC7616_OPAQUE


def test_rfc7616_md5_vector() -> None:
    _, md5 = parse_challenges(RFC7616_HEADER)
    assert _answer(md5)["response"] == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc7616_sha256_vector() -> None:
    sha, _ = parse_challenges(RFC7616_HEADER)
    assert (
        _answer(sha)["response"]
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_rfc2617_example() -> None:
    (challenge,) = parse_challenges(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    params = digest_response(
        challenge,
        DigestCredential("Mufasa", Secret("Circle Of Life")),
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


def test_authorization_value_quotes_strings_and_not_algorithm_qop_nc() -> None:
    sha, _ = parse_challenges(RFC7616_HEADER)
    assert authorization_value(_answer(sha)) == (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm=SHA-256, nonce="{RFC7616_NONCE}", nc=00000001, cnonce="{RFC7616_CNONCE}", '
        "qop=auth, response="
        '"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        f'opaque="{RFC7616_OPAQUE}"'
    )


def test_authorization_value_reads_back_with_the_same_parameters() -> None:
    sha, _ = parse_challenges(RFC7616_HEADER)
    params = _answer(sha)
    assert dict(parse_credentials(authorization_value(params)).params) == params


def test_stored_ha1_gives_the_same_response_as_the_password() -> None:
    _, md5 = parse_challenges(RFC7616_HEADER)
    ha1 = ha1_of("MD5", "Mufasa", "http-auth@example.org", "Circle of Life")
    stored = DigestCredential("Mufasa", ha1={"MD5": Secret(ha1)})
    assert _answer(md5, stored) == _answer(md5)


def test_stored_md5_ha1_cannot_answer_sha256() -> None:
    sha, _ = parse_challenges(RFC7616_HEADER)
    stored = DigestCredential("Mufasa", ha1={"MD5": Secret("0" * 32)})
    assert not stored.supports("SHA-256")
    with pytest.raises(DigestError):
        _answer(sha, stored)


@pytest.mark.parametrize("algorithm", ["MD5-sess", "SHA-256-sess", "SHA-512-256-sess"])
def test_sess_variants_hash_nonce_and_cnonce_into_ha1(algorithm: str) -> None:
    (challenge,) = parse_challenges(
        f'Digest realm="r", nonce="n", qop="auth", algorithm={algorithm}'
    )
    base = algorithm.removesuffix("-sess")
    ha1 = hash_hex(base, f"{ha1_of(base, 'Mufasa', 'r', 'Circle of Life')}:n:{RFC7616_CNONCE}")
    ha2 = hash_hex(base, "GET:/dir/index.html")
    expected = hash_hex(base, f"{ha1}:n:00000001:{RFC7616_CNONCE}:auth:{ha2}")
    assert _answer(challenge)["response"] == expected
    assert _answer(challenge)["algorithm"] == algorithm


def test_sha512_256_is_the_truncated_sha512_variant_not_sha256() -> None:
    assert hash_hex("SHA-512-256", "") == (
        "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"
    )


def test_without_qop_the_rfc2069_form_has_no_cnonce_or_nc() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n"')
    params = _answer(challenge)
    assert "cnonce" not in params and "nc" not in params and "qop" not in params
    ha1 = ha1_of("MD5", "Mufasa", "r", "Circle of Life")
    assert params["response"] == hash_hex(
        "MD5", f"{ha1}:n:{hash_hex('MD5', 'GET:/dir/index.html')}"
    )


def test_auth_int_is_used_only_when_it_is_the_only_qop() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n", qop="auth-int"')
    params = digest_response(
        challenge, MUFASA, method="SUBSCRIBE", uri="sip:a@b", body=b"<x/>", cnonce="c"
    )
    ha1 = ha1_of("MD5", "Mufasa", "r", "Circle of Life")
    ha2 = hash_hex("MD5", f"SUBSCRIBE:sip:a@b:{hash_hex('MD5', b'<x/>')}")
    assert params["qop"] == "auth-int"
    assert params["response"] == hash_hex("MD5", f"{ha1}:n:00000001:c:auth-int:{ha2}")


def test_nonce_count_is_eight_hex_digits() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n", qop=auth')
    params = digest_response(challenge, MUFASA, method="SUBSCRIBE", uri="sip:a@b", nc=26)
    assert params["nc"] == "0000001a"


def test_missing_algorithm_means_md5() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n"')
    assert challenge.algorithm == "MD5"


def test_algorithm_names_compare_case_insensitively_and_answer_in_rfc_spelling() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n", qop=auth, algorithm=sha-256')
    assert _answer(challenge)["algorithm"] == "SHA-256"


def test_strength_order_prefers_sha512_256_then_sha256_then_md5() -> None:
    ranks = [algorithm_rank(a) for a in ("MD5", "SHA-256", "SHA-512-256")]
    assert ranks == sorted(ranks)  # type: ignore[type-var]
    assert algorithm_rank("SHA-1") is None


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ('Digest realm="r", nonce="n", algorithm=SHA-1', "algorithm"),
        ('Digest realm="r", nonce="n", qop="auth-conf"', "qop"),
        ('Digest realm="r", nonce="n", algorithm=MD5-sess', "without qop"),
    ],
)
def test_unanswerable_challenges_are_refused_with_the_value_named(
    header: str, problem: str
) -> None:
    (challenge,) = parse_challenges(header)
    with pytest.raises(DigestError, match=problem):
        _answer(challenge)


def test_several_headers_and_other_schemes_are_all_returned() -> None:
    challenges = parse_challenges(
        ['Basic realm="x", Digest realm="y", nonce="n"', "Newauth abc==, Digest realm=z,nonce=q"]
    )
    assert [(c.scheme, c.realm) for c in challenges] == [
        ("Basic", "x"),
        ("Digest", "y"),
        ("Newauth", ""),
        ("Digest", "z"),
    ]
    assert challenges[2].params == {"token68": "abc=="}


def test_unknown_parameters_are_kept_and_quoted_strings_unescaped() -> None:
    (challenge,) = parse_challenges(
        'Digest realm="a \\"quoted\\", realm", nonce="n,1", stale=TRUE, x-vendor="v"'
    )
    assert challenge.realm == 'a "quoted", realm'
    assert challenge.nonce == "n,1"
    assert challenge.stale is True
    assert challenge.params["x-vendor"] == "v"


def test_proxy_challenges_are_marked() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n"', proxy=True)
    assert challenge.proxy


@pytest.mark.parametrize(
    "header",
    [
        'Digest realm="r", nonce="n',  # unterminated quote
        'Digest nonce="n"',  # no realm
        'Digest realm="r"',  # no nonce
        'realm="r", Digest nonce="n"',  # parameter before the scheme
        'Digest realm="r", realm="s", nonce="n"',  # repeated parameter
    ],
)
def test_malformed_challenges_raise_a_header_parse_error(header: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_challenges(header)
    assert info.value.kind == "header"


def test_parameter_values_with_cr_or_lf_are_never_written() -> None:
    with pytest.raises(DigestError):
        authorization_value({"username": "bob\r\nX: injected"})


def test_secrets_never_show_in_repr_or_str() -> None:
    credential = DigestCredential("bob", Secret("hunter2"), {"MD5": Secret("abcdef")})
    for text in (repr(credential), str(credential), repr(Secret("hunter2")), f"{Secret('x')}"):
        assert "hunter2" not in text and "abcdef" not in text
    assert "bob" in repr(credential)


def test_secret_refuses_to_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret("hunter2"))
