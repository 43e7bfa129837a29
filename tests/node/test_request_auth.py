"""node/request_auth.py: signed requests (CONTRACT.md section 6), one test per check of the contract's sentence,
the strict header parser shape by shape, the nonce cache's caps, session tokens and single-use login links."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from node.request_auth import (
    CLOCK_SKEW_MS_MAX,
    HEADER_CHARS_MAX,
    LOGIN_LINK_TTL_MS,
    SCHEME,
    SESSION_TTL_MS,
    AuthenticatedOrg,
    AuthError,
    BearerHeader,
    LoginLinks,
    NonceCache,
    RequestVerifier,
    SessionIssuer,
    SignedHeader,
    fresh_login_code,
    fresh_nonce,
    fresh_session_secret,
    parse_authorization,
    sign_request,
    string_to_sign,
)

CHAIN = "ecert-test"
NODE = "n1"
START_MS = 1_700_000_000_000
NOW_MS = START_MS + 60_000
SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
NONCE = "0123456789abcdef"
PATH = "/v1/certs/EC12?consistency=linearizable"


def pk(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


class Orgs:
    """Committed state as the verifier reads it: org -> (status, sign_pk)."""

    def __init__(self) -> None:
        self.table: dict[str, tuple[str, bytes | str]] = {
            "acme": ("active", pk(SEED)), "cold": ("frozen", pk(SEED)), "newco": ("pending", pk(SEED)),
            "bank": ("active", pk(OTHER_SEED).hex())}

    def __call__(self, org_id: str) -> tuple[str, bytes | str] | None:
        return self.table.get(org_id)


def verifier(orgs: Orgs | None = None, node_id: str = NODE, chain_id: str = CHAIN,
             nonces: NonceCache | None = None) -> RequestVerifier:
    return RequestVerifier(chain_id, node_id, START_MS, orgs or Orgs(), nonces)


def header(org: str = "acme", seed: bytes = SEED, method: str = "GET", path: str = PATH, body: bytes = b"",
           ts: int = NOW_MS, nonce: str = NONCE, node_id: str = NODE, chain_id: str = CHAIN) -> str:
    return sign_request(seed, chain_id, node_id, org, method, path, body, ts, nonce)


def refused(fn: Callable[..., object], *args: object, status: int = 401, code: str = "unauthenticated"
            ) -> AuthError:
    with pytest.raises(AuthError) as info:
        fn(*args)
    assert (info.value.status, info.value.code) == (status, code), info.value
    return info.value


# -- the string to sign and the header -----------------------------------------------------------------------------


def test_string_to_sign_is_the_nine_contract_lines() -> None:
    sts = string_to_sign(CHAIN, NODE, "acme", "get", PATH, 123, NONCE, b"")
    assert sts.split("\n") == ["ecert-request/1", CHAIN, NODE, "acme", "GET", PATH, "123", NONCE,
                               hashlib.sha256(b"").hexdigest()]


def test_string_to_sign_refuses_a_newline_in_any_field() -> None:
    refused(string_to_sign, CHAIN, NODE, "acme", "GET", "/v1/x\n/y", 1, NONCE, b"")
    refused(string_to_sign, "a\nb", NODE, "acme", "GET", "/", 1, NONCE, b"")


def test_request_target_must_be_utf8_text() -> None:
    refused(verifier().verify, "GET", "/v1/certs/\udcff", b"", header(), NOW_MS)
    assert verifier().verify("GET", "/v1/é?q=😀", b"", header(path="/v1/é?q=😀"), NOW_MS).org_id == "acme"


def test_header_shape_and_parse_round_trip() -> None:
    h = header()
    assert h.startswith(f'{SCHEME} org="acme",ts="{NOW_MS}",nonce="{NONCE}",sig="')
    parsed = parse_authorization(h)
    assert isinstance(parsed, SignedHeader)
    assert (parsed.org_id, parsed.ts_ms, parsed.nonce, len(parsed.sig)) == ("acme", NOW_MS, NONCE, 64)
    sts = string_to_sign(CHAIN, NODE, "acme", "GET", PATH, NOW_MS, NONCE, b"")
    SigningKey(SEED).verify_key.verify(sts.encode(), parsed.sig)


def test_sign_request_refuses_what_a_node_would_refuse() -> None:
    refused(header, "acme", SEED, "GET", PATH, b"", NOW_MS, "ABCDEF0123456789")
    refused(header, "bad org", SEED)


def test_parse_accepts_any_order_spaces_after_commas_and_scheme_case() -> None:
    sig = base64.b64encode(bytes(64)).decode()
    parsed = parse_authorization(f'ecert-ed25519 sig="{sig}", nonce="{NONCE}" ,\tts="5",org="acme"')
    assert parsed == SignedHeader("acme", 5, NONCE, bytes(64))
    assert parse_authorization("Bearer abc~def") == BearerHeader("abc~def")
    assert parse_authorization("bearer x.y_z-") == BearerHeader("x.y_z-")


SIG = base64.b64encode(bytes(range(64))).decode()
GOOD = {"org": "acme", "ts": "1700000000000", "nonce": NONCE, "sig": SIG}


def build(params: dict[str, str], scheme: str = SCHEME) -> str:
    return scheme + " " + ",".join(f'{k}="{v}"' for k, v in params.items())


MALFORMED = [
    "",
    " ",
    SCHEME,
    SCHEME + " ",
    "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
    "ECERT-ED25519X " + build(GOOD)[len(SCHEME) + 1:],
    "ECERT-ED2551\u0131 " + build(GOOD)[len(SCHEME) + 1:],
    build(GOOD).replace(" ", "  ", 1),
    build(GOOD) + ",",
    "," + build(GOOD),
    build(GOOD) + ' extra="1"',
    build(GOOD).replace('"acme"', "acme"),
    build(GOOD).replace('org="acme"', "org='acme'"),
    build(GOOD).replace('org="acme"', 'org = "acme"'),
    build(GOOD).replace('org="acme"', 'ORG="acme"'),
    build(GOOD).replace('org="acme"', 'org="ac\\"me"'),
    build({**GOOD, "realm": "x"}),
    build(GOOD) + ',org="acme"',
    build(GOOD) + f',nonce="{NONCE}"',
    build({k: v for k, v in GOOD.items() if k != "sig"}),
    build({k: v for k, v in GOOD.items() if k != "ts"}),
    build({**GOOD, "org": ""}),
    build({**GOOD, "org": "-acme"}),
    build({**GOOD, "org": "a" * 65}),
    build({**GOOD, "org": "ac me"}),
    build({**GOOD, "org": "acmé"}),
    build({**GOOD, "ts": ""}),
    build({**GOOD, "ts": "0"}),
    build({**GOOD, "ts": "01700000000000"}),
    build({**GOOD, "ts": "-1"}),
    build({**GOOD, "ts": "1.5"}),
    build({**GOOD, "ts": "1" * 16}),
    build({**GOOD, "ts": "\u0661\u0662"}),
    build({**GOOD, "nonce": "0123456789abcde"}),
    build({**GOOD, "nonce": "0" * 65}),
    build({**GOOD, "nonce": NONCE.upper()}),
    build({**GOOD, "nonce": "0123456789abcdeg"}),
    build({**GOOD, "sig": ""}),
    build({**GOOD, "sig": base64.b64encode(bytes(63)).decode()}),
    build({**GOOD, "sig": base64.b64encode(bytes(65)).decode()}),
    build({**GOOD, "sig": SIG.rstrip("=")}),
    build({**GOOD, "sig": base64.urlsafe_b64encode(b"\xff" * 64).decode()}),
    build({**GOOD, "sig": SIG[:-3] + "B=="}),  # non-canonical: trailing bits set
    build({**GOOD, "sig": " " + SIG}),
    build(GOOD) + "x" * HEADER_CHARS_MAX,
    SCHEME + " " + "a" * 10_000_000,
    "Bearer",
    "Bearer ",
    "Bearer a b",
    "Bearer a\tb",
    'Bearer "tok"',
    "Bearer " + "a" * HEADER_CHARS_MAX,
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_headers_are_refused(value: str) -> None:
    assert parse_authorization(build(GOOD)) == SignedHeader("acme", 1700000000000, NONCE, bytes(range(64)))
    refused(parse_authorization, value)


def test_malformed_header_refused_by_verify_before_any_lookup() -> None:
    looked: list[str] = []
    v = RequestVerifier(CHAIN, NODE, START_MS, lambda org: looked.append(org))  # type: ignore[func-returns-value]
    refused(v.verify, "GET", PATH, b"", "x" * 100_000, NOW_MS)
    assert looked == []


# -- RequestVerifier: each check of the contract ---------------------------------------------------------------


def test_round_trip_with_a_body() -> None:
    body = b'{"amount": 100}'
    v = verifier()
    assert v.verify("POST", "/v1/session", body, header(method="POST", path="/v1/session", body=body),
                    NOW_MS) == AuthenticatedOrg("acme")
    assert len(v.nonces) == 1


def test_method_case_does_not_matter_to_the_signature() -> None:
    assert verifier().verify("get", PATH, b"", header(method="GeT"), NOW_MS) == AuthenticatedOrg("acme")


def test_frozen_org_accepted_pending_and_unknown_refused() -> None:
    v = verifier()
    assert v.verify("GET", PATH, b"", header(org="cold"), NOW_MS).org_id == "cold"
    assert "pending" in refused(v.verify, "GET", PATH, b"", header(org="newco"), NOW_MS).message
    assert "unknown org" in refused(v.verify, "GET", PATH, b"", header(org="ghost"), NOW_MS).message


def test_hex_public_keys_are_accepted() -> None:
    assert verifier().verify("GET", PATH, b"", header(org="bank", seed=OTHER_SEED), NOW_MS).org_id == "bank"


def test_wrong_key_refused() -> None:
    err = refused(verifier().verify, "GET", PATH, b"", header(seed=OTHER_SEED), NOW_MS)
    assert "signature does not verify" in err.message


def test_rotated_key_old_signature_refused_new_accepted() -> None:
    orgs = Orgs()
    v = verifier(orgs)
    old = header(nonce="a" * 16)
    orgs.table["acme"] = ("active", pk(OTHER_SEED))  # org.rotate_key committed
    refused(v.verify, "GET", PATH, b"", old, NOW_MS)
    assert v.verify("GET", PATH, b"", header(seed=OTHER_SEED, nonce="b" * 16), NOW_MS).org_id == "acme"


@pytest.mark.parametrize("offset_ms", [-CLOCK_SKEW_MS_MAX, 0, CLOCK_SKEW_MS_MAX])
def test_ts_at_the_window_edges_accepted(offset_ms: int) -> None:
    assert verifier().verify("GET", PATH, b"", header(ts=NOW_MS + offset_ms), NOW_MS).org_id == "acme"


def test_ts_too_old_refused() -> None:
    err = refused(verifier().verify, "GET", PATH, b"", header(ts=NOW_MS - CLOCK_SKEW_MS_MAX - 1), NOW_MS)
    assert "too old" in err.message


def test_ts_too_new_refused() -> None:
    err = refused(verifier().verify, "GET", PATH, b"", header(ts=NOW_MS + CLOCK_SKEW_MS_MAX + 1), NOW_MS)
    assert "ahead" in err.message


def test_ts_before_node_start_refused_even_inside_the_window() -> None:
    err = refused(verifier().verify, "GET", PATH, b"", header(ts=START_MS - 1), START_MS + 1000)
    assert "before this node started" in err.message
    assert verifier().verify("GET", PATH, b"", header(ts=START_MS), START_MS + 1000).org_id == "acme"


def test_replayed_nonce_refused() -> None:
    v = verifier()
    h = header()
    v.verify("GET", PATH, b"", h, NOW_MS)
    assert "nonce already used" in refused(v.verify, "GET", PATH, b"", h, NOW_MS + 1).message
    # the same nonce in a new header (other ts, other path) is still a reuse
    refused(v.verify, "GET", "/v1/status", b"", header(path="/v1/status", ts=NOW_MS + 5), NOW_MS + 5)


def test_nonce_is_per_org_and_per_node() -> None:
    v = verifier()
    v.verify("GET", PATH, b"", header(), NOW_MS)
    assert v.verify("GET", PATH, b"", header(org="cold"), NOW_MS).org_id == "cold"
    assert verifier(node_id="n2").verify("GET", PATH, b"", header(node_id="n2"), NOW_MS).org_id == "acme"


def test_nonce_reuse_allowed_after_the_window() -> None:
    v = verifier()
    v.verify("GET", PATH, b"", header(ts=NOW_MS), NOW_MS)
    later = NOW_MS + CLOCK_SKEW_MS_MAX
    refused(v.verify, "GET", PATH, b"", header(ts=later), later)  # the first ts is still acceptable
    later += 1
    assert v.verify("GET", PATH, b"", header(ts=later), later).org_id == "acme"
    assert len(v.nonces) == 1


def test_nonce_remembered_only_once_the_signature_verifies() -> None:
    v = verifier()
    refused(v.verify, "GET", PATH, b"", header(seed=OTHER_SEED), NOW_MS)
    refused(v.verify, "GET", PATH, b"", header(org="newco"), NOW_MS)
    assert len(v.nonces) == 0
    assert v.verify("GET", PATH, b"", header(), NOW_MS).org_id == "acme"


def test_clock_stepping_back_does_not_readmit_a_forgotten_nonce() -> None:
    v = verifier()
    v.verify("GET", PATH, b"", header(ts=NOW_MS), NOW_MS)
    v.verify("GET", PATH, b"", header(ts=NOW_MS + 40_000, nonce="f" * 16), NOW_MS + 40_000)  # evicts the first
    err = refused(v.verify, "GET", PATH, b"", header(ts=NOW_MS), NOW_MS + 10_000)  # clock went back 30 s
    assert "too old" in err.message


@pytest.mark.parametrize("change", ["path", "query", "body", "method", "node", "chain"])
def test_signature_over_another_request_fails_and_shows_the_string_to_sign(change: str) -> None:
    method, path, body = "POST", "/v1/session?x=1", b"{}"
    signed = {"path": dict(path="/v1/sessions?x=1"), "query": dict(path="/v1/session?x=2"),
              "body": dict(body=b"{ }"), "method": dict(method="PUT"), "node": dict(node_id="n2"),
              "chain": dict(chain_id="other-chain")}[change]
    h = header(**{"method": method, "path": path, "body": body, **signed})  # type: ignore[arg-type]
    err = refused(verifier().verify, method, path, body, h, NOW_MS)
    expected = string_to_sign(CHAIN, NODE, "acme", method, path, NOW_MS, NONCE, body)
    assert expected in err.message
    assert err.extra == {"string_to_sign": expected}


def test_bearer_header_is_not_a_signed_request() -> None:
    refused(verifier().verify, "POST", "/v1/session", b"", "Bearer abc", NOW_MS)


def test_verify_takes_an_already_parsed_header() -> None:
    parsed = parse_authorization(header())
    assert isinstance(parsed, SignedHeader)
    assert verifier().verify("GET", PATH, b"", parsed, NOW_MS).org_id == "acme"


def test_fresh_nonce_signs_and_verifies() -> None:
    a, b = fresh_nonce(), fresh_nonce()
    assert a != b and len(a) == 32
    v = verifier()
    for n in (a, b):
        v.verify("GET", PATH, b"", header(nonce=n), NOW_MS)


# -- the nonce cache's caps ----------------------------------------------------------------------------------------


def nonce(i: int) -> str:
    return f"{i:016x}"


def test_org_cap_refuses_with_429_and_others_still_pass() -> None:
    v = verifier(nonces=NonceCache(nonces_max=10, org_nonces_max=3))
    for i in range(3):
        v.verify("GET", PATH, b"", header(nonce=nonce(i)), NOW_MS)
    refused(v.verify, "GET", PATH, b"", header(nonce=nonce(3)), NOW_MS, status=429, code="too_many_requests")
    assert v.verify("GET", PATH, b"", header(org="cold", nonce=nonce(3)), NOW_MS).org_id == "cold"
    assert len(v.nonces) == 4


def test_global_cap_refuses_with_503_and_frees_as_the_window_moves() -> None:
    orgs = Orgs()
    orgs.table["third"] = ("active", pk(SEED))
    v = verifier(orgs, nonces=NonceCache(nonces_max=4, org_nonces_max=2))
    for org in ("acme", "cold"):
        for i in range(2):
            v.verify("GET", PATH, b"", header(org=org, nonce=nonce(i)), NOW_MS)
    err = refused(v.verify, "GET", PATH, b"", header(org="third", nonce=nonce(9)), NOW_MS, status=503,
                  code="busy")
    assert "retry later" in err.message
    later = NOW_MS + CLOCK_SKEW_MS_MAX + 1
    assert v.verify("GET", PATH, b"", header(org="third", nonce=nonce(9), ts=later), later).org_id == "third"
    assert len(v.nonces) == 1


def test_nonce_cache_eviction_keeps_the_maps_consistent() -> None:
    cache = NonceCache(window_ms=100)
    for i in range(50):
        cache.evict(i * 10)
        cache.remember("o" + str(i % 3), nonce(i), i * 10)
    cache.evict(490)
    assert len(cache) == 11  # ts 390..490
    assert cache.seen("o0", nonce(39)) and not cache.seen("o2", nonce(38))
    cache.evict(10_000)
    assert len(cache) == 0


# -- session tokens --------------------------------------------------------------------------------------------


SECRET = b"s" * 32


def test_session_round_trip_and_expiry() -> None:
    sessions = SessionIssuer(SECRET, CHAIN, NODE)
    token, expires = sessions.issue("acme", NOW_MS)
    assert expires == NOW_MS + SESSION_TTL_MS == NOW_MS + 15 * 60_000
    assert sessions.verify(token, NOW_MS) == sessions.verify(token, expires - 1) == "acme"
    assert "expired" in refused(sessions.verify, token, expires).message
    assert parse_authorization("Bearer " + token) == BearerHeader(token)


def test_session_tampering_refused() -> None:
    sessions = SessionIssuer(SECRET, CHAIN, NODE)
    token, expires = sessions.issue("acme", NOW_MS)
    prefix, node, org, exp, mac = token.split("~")
    for forged in ("~".join((prefix, node, "bank", exp, mac)),
                   "~".join((prefix, node, org, str(expires + 60_000), mac)),
                   "~".join((prefix, node, org, exp, ("A" if mac[0] != "A" else "B") + mac[1:]))):
        assert "does not verify" in refused(sessions.verify, forged, NOW_MS).message


def test_session_from_another_node_chain_or_secret_refused() -> None:
    token, _ = SessionIssuer(SECRET, CHAIN, "n2").issue("acme", NOW_MS)
    assert "issued by node 'n2'" in refused(SessionIssuer(SECRET, CHAIN, NODE).verify, token, NOW_MS).message
    for other in (SessionIssuer(SECRET, "other-chain", NODE), SessionIssuer(b"t" * 32, CHAIN, NODE)):
        token, _ = other.issue("acme", NOW_MS)
        refused(SessionIssuer(SECRET, CHAIN, NODE).verify, token, NOW_MS)


@pytest.mark.parametrize("token", ["", "ecs1", "ecs1~n1~acme~1", "ecs2~n1~acme~1~" + "A" * 43,
                                   "ecs1~n1~acme~01~" + "A" * 43, "ecs1~n1~acme~1~" + "A" * 42,
                                   "ecs1~n1~acme~1~" + "é" * 43, "ecs1~n1~acme~1~" + "A" * 43 + "~x",
                                   "ecs1~n1~" + "a" * 600 + "~1~" + "A" * 43])
def test_malformed_session_tokens_refused(token: str) -> None:
    assert "malformed" in refused(SessionIssuer(SECRET, CHAIN, NODE).verify, token, NOW_MS).message


def test_session_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError):
        SessionIssuer(b"short", CHAIN, NODE)
    assert len(fresh_session_secret()) == 32 and fresh_session_secret() != fresh_session_secret()


# -- login links ----------------------------------------------------------------------------------------------


def test_login_link_redeems_once_for_a_session() -> None:
    sessions = SessionIssuer(SECRET, CHAIN, NODE)
    links = LoginLinks(sessions)
    code = fresh_login_code()
    assert links.mint("acme", code, NOW_MS) == NOW_MS + LOGIN_LINK_TTL_MS
    token, expires = links.redeem(code, NOW_MS + 5)
    assert expires == NOW_MS + 5 + SESSION_TTL_MS and sessions.verify(token, NOW_MS + 5) == "acme"
    assert "already used" in refused(links.redeem, code, NOW_MS + 6).message


def test_login_link_expires_and_unknown_or_malformed_codes_refused() -> None:
    links = LoginLinks(SessionIssuer(SECRET, CHAIN, NODE))
    code = fresh_login_code()
    links.mint("acme", code, NOW_MS)
    assert "expired" in refused(links.redeem, code, NOW_MS + LOGIN_LINK_TTL_MS).message
    assert len(links) == 0  # an expired code is spent too
    refused(links.redeem, fresh_login_code(), NOW_MS)
    assert "malformed" in refused(links.redeem, "x" * 10_000, NOW_MS).message


def test_login_links_bounded_oldest_dropped() -> None:
    links = LoginLinks(SessionIssuer(SECRET, CHAIN, NODE), links_max=3)
    codes = [fresh_login_code() for _ in range(4)]
    for i, code in enumerate(codes):
        links.mint("acme", code, NOW_MS + i)
    assert len(links) == 3
    refused(links.redeem, codes[0], NOW_MS + 10)
    assert links.redeem(codes[3], NOW_MS + 10)[0]


def test_login_links_drop_expired_before_the_oldest_live() -> None:
    links = LoginLinks(SessionIssuer(SECRET, CHAIN, NODE), ttl_ms=100, links_max=2)
    old, live, new = (fresh_login_code() for _ in range(3))
    links.mint("acme", old, 0)
    links.mint("acme", live, 150)
    links.mint("acme", new, 160)  # `old` expired: dropped, `live` kept
    assert links.redeem(live, 170)[0] and links.redeem(new, 170)[0]


# -- property ------------------------------------------------------------------------------------------------------


PATHS = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), min_size=1, max_size=60)


@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=PATHS,
       body=st.binary(min_size=1, max_size=200), data=st.data())
def test_signed_requests_verify_and_any_changed_byte_breaks_them(method: str, path: str, body: bytes,
                                                                 data: st.DataObject) -> None:
    h = header(method=method, path=path, body=body)
    assert verifier().verify(method, path, body, h, NOW_MS) == AuthenticatedOrg("acme")
    i = data.draw(st.integers(0, len(body) - 1))
    flipped = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1:]
    refused(verifier().verify, method, path, flipped, h, NOW_MS)
    j = data.draw(st.integers(0, len(path) - 1))
    other = data.draw(st.characters(blacklist_characters="\n" + path[j], blacklist_categories=("Cs",)))
    refused(verifier().verify, method, path[:j] + other + path[j + 1:], body, h, NOW_MS)


def test_an_ahead_dated_request_is_reported_before_it_is_accepted_and_outlives_a_restart(tmp_path):
    """A header dated ahead of the node's clock would still be in the window after a quick restart; the verifier
    reports its ts (the node keeps it on disk) and the next process starts above it, so it cannot pass twice."""
    from node.http.auth_gate import AheadHorizon

    seed = b"\x07" * 32
    pk = bytes(SigningKey(seed).verify_key)
    lookup = {"tier1": ("active", pk)}.get
    now = 1_800_000_000_000
    ahead_ts = now + 20_000
    header = sign_request(seed, "c", "n1", "tier1", "GET", "/v1/orgs/tier1/certs", b"", ahead_ts, "ab" * 16)
    horizon = AheadHorizon(tmp_path / "auth.horizon")
    first = RequestVerifier("c", "n1", horizon.not_before_ms(now - 1000), lookup, on_ahead_ts=horizon.record)
    assert first.verify("GET", "/v1/orgs/tier1/certs", b"", header, now).org_id == "tier1"
    assert (tmp_path / "auth.horizon").read_text().strip() == str(ahead_ts)
    # The process crashes and is back 2 s later: its nonce cache is empty, but it starts above the stored ts.
    restarted = AheadHorizon(tmp_path / "auth.horizon")
    second = RequestVerifier("c", "n1", restarted.not_before_ms(now + 2000), lookup, on_ahead_ts=restarted.record)
    with pytest.raises(AuthError, match="before this node started"):
        second.verify("GET", "/v1/orgs/tier1/certs", b"", header, now + 2000)
    # A request dated at or behind the clock writes nothing.
    calls: list[int] = []
    third = RequestVerifier("c", "n1", 0, lookup, on_ahead_ts=calls.append)
    behind = sign_request(seed, "c", "n1", "tier1", "GET", "/x", b"", now, "cd" * 16)
    third.verify("GET", "/x", b"", behind, now)
    assert calls == []
