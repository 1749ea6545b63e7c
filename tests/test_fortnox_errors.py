"""Parsing and classifying Fortnox error answers (reference §7; cases F-D2, F-D3, F-D6)."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.fortnox.codes import OAUTH_ERRORS, RULES, Category, rule_for_code, rule_for_text
from bot.fortnox.errors import EXCERPT_CHARS, FortnoxError, parse_error, transport_error

F_D3_BODY = (
    '{"ErrorInformation":{"Error":1,"Message":"Kan inte logga in, access-token eller client-secret saknas.",'
    '"Code":"2000311"}}'
)
MAINTENANCE_HTML = (
    "<!DOCTYPE html>\n<html>\n  <head><title>Fortnox - Underhåll</title>\n"
    + "<style>" + "body { color: #333; }\n" * 200 + "</style></head>\n"
    "  <body><h1>Vi utför underhåll</h1><p>Service unavailable, try again later.</p></body>\n</html>"
)


# --- the table ----------------------------------------------------------------------------


def test_code_table_is_well_formed():
    codes = [r.match for r in RULES if isinstance(r.match, int)]
    texts = [r.match.lower() for r in RULES if isinstance(r.match, str)]
    assert len(codes) == len(set(codes)), "duplicate code in RULES"
    assert len(texts) == len(set(texts)), "duplicate text pattern in RULES"
    for rule in RULES:
        assert isinstance(rule.category, Category)
        assert rule.meaning.strip()
        assert isinstance(rule.match, (int, str)) and not isinstance(rule.match, bool)
        if isinstance(rule.match, str):
            re.compile(rule.match)
    assert all(isinstance(c, Category) for c in OAUTH_ERRORS.values())


def test_category_vocabulary():
    assert {c.value for c in Category} == {
        "ok", "auth", "credential_format", "scope", "license", "permission", "not_found", "bad_headers",
        "rate_limited", "unavailable", "invalid_refresh", "invalid_client", "redirect_mismatch", "invalid_scope",
        "service_account_not_allowed", "bad_request", "unknown",
    }


@pytest.mark.parametrize(
    "code, category",
    [
        (2000310, Category.auth),
        (2000311, Category.credential_format),
        (2003275, Category.auth),
        (2000663, Category.scope),
        (2001101, Category.license),
        (2001103, Category.license),
        (2001339, Category.permission),
        (2001427, Category.permission),
        (2003330, Category.permission),
        (1000030, Category.bad_headers),
        (1000031, Category.bad_headers),
        (1000003, Category.unavailable),
        (2000423, Category.not_found),
        (2001304, Category.not_found),
        (2000204, Category.not_found),
        (2000433, Category.not_found),
        (2001302, Category.not_found),
        (2000428, Category.not_found),
    ],
)
def test_every_documented_code(code, category):
    assert rule_for_code(code).category is category
    body = {"ErrorInformation": {"error": 1, "message": "x", "code": code}}
    assert parse_error(400, body).category is category


@pytest.mark.parametrize(
    "text, category",
    [
        ("Invalid refresh token", Category.invalid_refresh),
        ("Saknar behörighet för att lista fakturor", Category.permission),
        ("Saknar rättighet", Category.permission),
        ("missing.rights", Category.permission),
        ("Unauthorized", Category.auth),
        ("invalid_scope", Category.invalid_scope),
        ("Auth code or ClientID supplied is invalid", Category.invalid_client),
        ("Client does not allow service account", Category.service_account_not_allowed),
        ("The redirect_uri does not match", Category.redirect_mismatch),
        ("Har inte behörighet för scope", Category.scope),
        ("Det finns ingen aktiv licens för önskat scope", Category.license),
        ("Kunde inte hitta kund", Category.not_found),
    ],
)
def test_text_rules(text, category):
    assert rule_for_text(text).category is category
    assert rule_for_text(text.upper()).category is category


def test_unauthorized_rule_does_not_match_unauthorized_client():
    assert rule_for_text("unauthorized_client") is None


# --- F-D3 ---------------------------------------------------------------------------------


def test_F_D3_pascal_case_string_code():
    err = parse_error(401, F_D3_BODY.encode())
    assert err.code == 2000311
    assert err.category is Category.credential_format
    assert err.message == "Kan inte logga in, access-token eller client-secret saknas."
    assert err.oauth_error is None  # "Error": 1 is a flag, not an OAuth error


def test_F_D3_lowercase_keys_int_code():
    body = {"errorinformation": {"error": 1, "message": "Kan inte logga in, access-token eller client-secret saknas.", "code": 2000311}}
    err = parse_error(401, body)
    assert (err.code, err.category) == (2000311, Category.credential_format)
    assert err.message.startswith("Kan inte logga in")


def test_F_D3_same_from_str_and_dict_and_bytes():
    as_dict = json.loads(F_D3_BODY)
    results = {parse_error(403, b) .category for b in (F_D3_BODY, F_D3_BODY.encode(), as_dict)}
    assert results == {Category.credential_format}


def test_code_beats_status_and_text():
    # A scope code on a 401 is still scope: never mistake scope/licence for auth (reference §12).
    body = {"ErrorInformation": {"message": "Unauthorized", "code": "2000663"}}
    assert parse_error(401, body).category is Category.scope


def test_mixed_case_keys_and_whitespace_code():
    body = {"ERRORINFORMATION": {"ERROR": "1", "MeSsAgE": "  Ogiltig\n inloggning ", "cOdE": " 2000310 "}}
    err = parse_error(403, body)
    assert (err.code, err.category, err.message) == (2000310, Category.auth, "Ogiltig inloggning")
    assert err.oauth_error is None


# --- F-D6 ---------------------------------------------------------------------------------


def test_F_D6_envelope_without_code_is_unavailable():
    err = parse_error(400, {"ErrorInformation": {"message": "Service unavailable"}})
    assert err.category is Category.unavailable
    assert err.code is None
    assert err.message == "Service unavailable"


def test_F_D6_envelope_without_code_any_message_is_unavailable():
    assert parse_error(400, {"ErrorInformation": {"error": 1, "message": "Något gick fel"}}).category is Category.unavailable


def test_F_D6_empty_body_500():
    for body in (b"", "", None):
        err = parse_error(500, body)
        assert err.category is Category.unavailable
        assert (err.message, err.excerpt, err.code) == ("", "", None)


def test_F_D6_html_503_short_excerpt():
    err = parse_error(503, MAINTENANCE_HTML.encode(), headers={"Content-Type": "text/html; charset=utf-8"})
    assert err.category is Category.unavailable
    assert err.message == ""  # never the raw HTML page
    assert 0 < len(err.excerpt) <= EXCERPT_CHARS
    assert err.excerpt.startswith("<!DOCTYPE html> <html> <head>")
    assert "\n" not in err.excerpt and "  " not in err.excerpt


def test_F_D6_html_without_content_type():
    err = parse_error(503, MAINTENANCE_HTML)
    assert err.category is Category.unavailable and err.message == ""


def test_F_D6_unauthorized_401_is_auth():
    err = parse_error(401, b'{"message":"unauthorized"}')
    assert err.category is Category.auth
    assert err.message == "unauthorized"


# --- token endpoint (F-D2 and friends) -------------------------------------------------------


def test_F_D2_token_503_html_is_unavailable():
    err = parse_error(503, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", context="token")
    assert err.category is Category.unavailable


def test_F_D2_token_401_invalid_client():
    err = parse_error(401, b'{"error":"invalid_client"}', context="token")
    assert err.category is Category.invalid_client
    assert err.oauth_error == "invalid_client"


def test_F_D2_transport_timeout():
    err = transport_error(httpx.ConnectTimeout("timed out"))
    assert err.category is Category.unavailable
    assert err.transport == "timeout"
    assert err.status is None and err.code is None
    assert "ConnectTimeout" in err.excerpt


@pytest.mark.parametrize(
    "exc, name",
    [
        (httpx.ReadTimeout("x"), "timeout"),
        (httpx.PoolTimeout("x"), "timeout"),
        (httpx.ConnectError("refused"), "connect_error"),
        (httpx.ReadError("reset"), "read_error"),
        (httpx.RemoteProtocolError("bad"), "protocol_error"),
        (ValueError("odd"), "error"),
    ],
)
def test_transport_names(exc, name):
    err = transport_error(exc)
    assert err.transport == name and err.category is Category.unavailable


def test_transport_error_redacts_secrets():
    err = transport_error(httpx.ConnectError("failed with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"))
    assert "eyJhbGciOiJIUzI1NiJ9" not in err.excerpt


@pytest.mark.parametrize(
    "body",
    [
        {"message": "Invalid refresh token"},
        {"Message": "invalid refresh token"},
        {"error": "invalid_grant", "error_description": "Invalid refresh token"},
        {"error": "invalid_grant"},
        '{"error":"invalid_grant","error_description":"Invalid refresh token"}',
        b"Invalid refresh token",
    ],
)
def test_invalid_refresh_token_shapes(body):
    assert parse_error(400, body, context="token").category is Category.invalid_refresh


def test_invalid_refresh_in_api_context_too():
    assert parse_error(400, {"message": "Invalid refresh token"}).category is Category.invalid_refresh


def test_invalid_grant_with_redirect_description():
    body = {"error": "invalid_grant", "error_description": "redirect_uri does not match the authorization request"}
    assert parse_error(400, body, context="token").category is Category.redirect_mismatch


def test_token_401_without_clear_text_is_invalid_client():
    assert parse_error(401, b"", context="token").category is Category.invalid_client
    assert parse_error(401, {"message": "Unauthorized"}, context="token").category is Category.invalid_client
    assert parse_error(400, {"error": "invalid_request"}, context="token").category is Category.bad_request


def test_oauth_error_values():
    assert parse_error(400, {"error": "invalid_scope"}, context="token").category is Category.invalid_scope
    assert parse_error(400, {"Error": "INVALID_CLIENT"}, context="token").category is Category.invalid_client
    err = parse_error(400, {"error": "client does not allow service account"}, context="token")
    assert err.category is Category.service_account_not_allowed


# --- status fallbacks and odd shapes -------------------------------------------------------


def test_429_is_rate_limited_with_retry_after():
    err = parse_error(429, b"", headers={"retry-after": "3"})
    assert err.category is Category.rate_limited and err.retry_after == 3.0
    err = parse_error(429, {"message": "Too many requests"}, headers=[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")])
    assert err.category is Category.rate_limited and err.retry_after == 0.0
    assert parse_error(429, b"", headers={"Retry-After": "soon"}).retry_after is None
    assert parse_error(429, b"", headers=httpx.Headers({"RETRY-AFTER": "1.5"})).retry_after == 1.5


@pytest.mark.parametrize(
    "status, body, category",
    [
        (500, '{"ErrorInformation":{"error":1,"message":"Kan inte hitta fakturan.","code":2000423}}', Category.not_found),
        (502, b"Bad Gateway", Category.unavailable),
        (404, b"", Category.not_found),
        (403, b"", Category.auth),
        (400, {"ErrorInformation": {"message": "Okänt fel", "code": 9999999}}, Category.bad_request),
        (200, {"CompanyInformation": {}}, Category.ok),
        (None, None, Category.unknown),
        (301, b"", Category.unknown),
        (400, [{"message": "Saknar behörighet"}], Category.permission),
        (400, {"error": "missing.rights", "message": "Forbidden"}, Category.permission),
        (400, {"error": {"code": "2001101", "message": "licence"}}, Category.license),
        (400, '"Invalid refresh token"', Category.invalid_refresh),
        (400, "<?xml version='1.0'?><ErrorInformation><Error>1</Error><Message>Ogiltig inloggning</Message>"
              "<Code>2000310</Code></ErrorInformation>", Category.auth),
    ],
)
def test_odd_shapes(status, body, category):
    assert parse_error(status, body).category is category


def test_non_utf8_bytes():
    err = parse_error(500, b"\xff\xfe\x00garbage\x80")
    assert err.category is Category.unavailable
    assert isinstance(err.excerpt, str)


def test_huge_body_is_capped():
    body = b'{"ErrorInformation":{"message":"' + b"A" * 5_000_000 + b'","code":2000310}}'
    err = parse_error(500, body)
    assert err.category is Category.unavailable  # too big to be an envelope: only excerpted
    assert len(err.excerpt) <= EXCERPT_CHARS


def test_excerpt_redacts_tokens():
    body = {
        "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRJZCI6MX0.c2lnbmF0dXJl",
        "refresh_token": "9f8e7d6c-5b4a-3210-fedc-ba9876543210",
    }
    err = parse_error(400, json.dumps(body))
    assert "9f8e7d6c" not in err.excerpt and "eyJhbGciOiJIUzI1NiJ9" not in err.excerpt


def test_describe():
    err = parse_error(401, F_D3_BODY)
    assert err.describe() == "HTTP 401, code 2000311: Kan inte logga in, access-token eller client-secret saknas."
    assert transport_error(httpx.ConnectTimeout("")).describe().startswith("no response (timeout)")


def test_is_frozen():
    err = parse_error(500, b"")
    with pytest.raises(AttributeError):
        err.status = 1  # type: ignore[misc]


def test_garbage_inputs_never_raise():
    class Evil:
        def __str__(self):
            raise RuntimeError("boom")

    circular: dict = {}
    circular["self"] = circular
    deep: list = []
    cur = deep
    for _ in range(5000):
        cur.append([])
        cur = cur[0]
    for status, body in [(Evil(), Evil()), ("500", circular), (10**30, deep), (-1, object()), (True, {1: 2, None: 3}),
                         (500, "[" * 100_000), (400, {"errorinformation": "not a dict"}), (400, memoryview(b"{}"))]:
        err = parse_error(status, body, headers=Evil())
        assert isinstance(err, FortnoxError)
        assert isinstance(err.category, Category)
    assert parse_error("500", circular).status == 500


# --- property: never raises -----------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["ErrorInformation", "errorinformation", "code", "Code", "message", "Message", "error",
                         "Error", "error_description", "x"]) | st.text(max_size=8),
        children,
        max_size=4,
    ),
    max_leaves=20,
)
_bodies = (
    st.none()
    | st.binary(max_size=300)
    | st.text(max_size=300)
    | _json_values
    | _json_values.map(lambda v: json.dumps(v))
    | _json_values.map(lambda v: json.dumps(v).encode())
)
_statuses = st.none() | st.integers() | st.text(max_size=4)
_headers = st.none() | st.dictionaries(st.sampled_from(["Retry-After", "content-type", "x"]), st.text(max_size=20))


@settings(max_examples=400, deadline=None)
@given(status=_statuses, body=_bodies, headers=_headers, context=st.sampled_from(["api", "token", "other"]))
def test_parse_error_never_raises(status, body, headers, context):
    err = parse_error(status, body, headers=headers, context=context)
    assert isinstance(err, FortnoxError)
    assert isinstance(err.category, Category)
    assert len(err.excerpt) <= EXCERPT_CHARS
    assert err.code is None or isinstance(err.code, int)
    assert isinstance(err.message, str)
    assert err.retry_after is None or err.retry_after >= 0
