"""The Fortnox sandbox over real HTTP: consent, token endpoint, REST checks, limits and outages."""
from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from bot.sandbox import SandboxServer, World, decode_rights, demo_world

TENANT, OTHER = 1234567, 2345678
REDIRECT = "https://bot.example/oauth/fortnox/callback"
BASIC = "Basic " + base64.b64encode(b"sandbox-client:sandbox-secret").decode()
JSON = {"Accept": "application/json"}


def make_world(**kwargs) -> World:
    world = World(**kwargs)
    world.add_company(TENANT, "Acme AB")
    world.add_user(TENANT, 1, "Anna Admin", "anna@acme.example", sysadmin=True)
    world.add_user(TENANT, 2, "Bo Bokförare", sysadmin=False, rights={"bookkeeping", "supplierinvoice"})
    world.add_company(OTHER, "Globex AB", licences={"kundfaktura"})
    world.add_user(OTHER, 1, "Greta", sysadmin=True)
    return world


@pytest.fixture(scope="module")
def shared_server():
    with SandboxServer() as srv:
        yield srv


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
def server(shared_server, world):
    shared_server.world = world  # a fresh world per test, one server for the module (fast)
    return shared_server


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=5) as c:
        yield c


def api(client, path, token, **headers):
    return client.get(f"/3/{path}", headers={"Authorization": f"Bearer {token}", **JSON, **headers})


def token_call(client, data, auth=BASIC, **headers):
    return client.post("/oauth-v1/token", data=data, headers={"Authorization": auth, **headers} if auth else headers)


def consent(client, scope="companyinformation invoice", tenant=TENANT, user=1, action="approve", **extra):
    form = {"client_id": "sandbox-client", "response_type": "code", "scope": scope, "state": "st-1",
            "redirect_uri": REDIRECT, "access_type": "offline", "tenant_id": str(tenant), "user_id": str(user),
            "action": action, **extra}
    return client.post("/oauth-v1/auth", data=form)


def code_from(response) -> str:
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["state"] == ["st-1"]
    return query["code"][0]


def error_code(response) -> int:
    info = response.json()["ErrorInformation"]
    return int(info.get("code", info.get("Code")))


# ---- consent ---------------------------------------------------------------------------------------
def test_consent_page_renders_the_activation_form(client):
    r = client.get("/oauth-v1/auth", params={"client_id": "sandbox-client", "response_type": "code",
                                             "scope": "companyinformation invoice", "state": "st-1",
                                             "redirect_uri": REDIRECT, "access_type": "offline"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for text in ("<h1>Aktivering</h1>", "Godkänn & aktivera", "Avbryt", '<label for="tenant_id">',
                 '<label for="user_id">', "<code>invoice</code>", 'name="state" value="st-1"'):
        assert text in page


@pytest.mark.parametrize("kwargs, params, message", [
    ({}, {"client_id": "nope"}, "Auth code or ClientID supplied is invalid"),
    ({"registered_scopes": {"companyinformation"}}, {"scope": "companyinformation salary"}, "invalid_scope"),
    ({"allow_service_accounts": False}, {"account_type": "service"}, "Client does not allow service account"),
    ({"redirect_uris": ["https://other.example/cb"]}, {}, "redirect_uri does not match"),
])
def test_authorize_errors_are_fortnox_pages(server, client, kwargs, params, message):
    server.world = make_world(**kwargs)
    query = {"client_id": "sandbox-client", "response_type": "code", "scope": "companyinformation",
             "state": "s", "redirect_uri": REDIRECT, **params}
    r = client.get("/oauth-v1/auth", params=query)
    assert r.status_code == 400 and message in r.text and "Godkänn" not in r.text


def test_code_exchanges_once_and_only_once(client):
    code = code_from(consent(client))
    first = token_call(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"access_token", "refresh_token", "scope", "expires_in", "token_type"}
    assert body["scope"] == "companyinformation invoice" and body["expires_in"] == 3600
    assert body["token_type"] == "bearer"
    second = token_call(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    assert second.status_code == 400
    assert second.json() == {"error": "invalid_grant", "error_description": "Invalid authorization code"}
    assert api(client, "companyinformation", body["access_token"]).json()["CompanyInformation"]["DatabaseNumber"] == TENANT


def test_code_redirect_mismatch_and_expiry(client, world):
    code = code_from(consent(client))
    r = token_call(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT + "x"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
    world.advance(601)
    r = token_call(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_cancel_locked_unknown_user_and_service_by_non_admin(client, world):
    r = consent(client, action="cancel")
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert r.status_code == 302 and q["error"] == ["access_denied"] and q["state"] == ["st-1"] and "code" not in q

    world.add_company(3456789, "Låst AB", locked=True)
    world.add_user(3456789, 1, "Lars")
    r = consent(client, tenant=3456789)
    assert r.status_code == 302 and r.headers["location"] == REDIRECT  # nothing at all comes back

    r = consent(client, user=99)
    assert r.status_code == 200 and "användaren finns inte" in r.text and "Godkänn & aktivera" in r.text

    r = consent(client, user=2, account_type="service")
    assert r.status_code == 403 and "systemadministratör" in r.text


# ---- tokens ----------------------------------------------------------------------------------------
def test_refresh_rotates_and_old_refresh_token_dies(client, world):
    grant = world.issue_grant(TENANT, 1, {"companyinformation"})
    r = token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
    assert r.status_code == 200
    new = r.json()
    assert new["refresh_token"] != grant["refresh_token"] and new["access_token"] != grant["access_token"]
    again = token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
    # Fortnox cannot revoke access tokens: the old one lives until it expires
    assert api(client, "companyinformation", grant["access_token"]).status_code == 200
    assert token_call(client, {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]}).status_code == 200
    calls = world.token_calls
    assert [c["ok"] for c in calls] == [True, False, True]
    assert calls[0]["refresh_token_hash"] == calls[1]["refresh_token_hash"] != calls[2]["refresh_token_hash"]
    assert calls[1]["tenant_id"] == TENANT and calls[1]["status"] == 400


def test_client_auth_is_basic_only(client, world):
    grant = world.issue_grant(TENANT, 1, {"companyinformation"})
    bad = "Basic " + base64.b64encode(b"sandbox-client:wrong").decode()
    for r in (token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}, auth=bad),
              token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"],
                                  "client_id": "sandbox-client", "client_secret": "sandbox-secret"}, auth=None)):
        assert (r.status_code, r.json()) == (401, {"error": "invalid_client", "error_description": "Invalid client credentials"})
    r = token_call(client, {"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_access_token_claims_have_fortnox_shapes(world):
    grant = world.issue_grant(TENANT, 2, {"companyinformation", "bookkeeping"})
    assert jwt.get_unverified_header(grant["access_token"]) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(grant["access_token"], options={"verify_signature": False})
    assert type(claims["tenantId"]) is int and claims["tenantId"] == TENANT
    assert type(claims["userId"]) is int and claims["userId"] == 2
    assert claims["sub"] == f"2@{TENANT}"
    assert claims["clientId"] == claims["aud"] == "sandbox-client"
    assert claims["scopes"] == ["bookkeeping", "companyinformation"]
    assert claims["scope"] == "bookkeeping companyinformation"
    assert claims["exp"] - claims["iat"] == 3600 and claims["exp"] == grant["expires_at"]
    assert claims["authsource"] == "OAUTH2" and claims["iss"] == "https://api.fortnox.se/oauth2"
    assert claims["token_type"] == "bearer" and claims["jti"]
    rights = decode_rights(claims["rightsAsJson"])
    assert "bf.voucher" in rights and "kf.invoice" not in rights  # Bo only has bookkeeping rights
    admin = world.issue_grant(TENANT, 1, {"invoice"})["access_token"]
    assert "kf.invoice" in decode_rights(jwt.decode(admin, options={"verify_signature": False})["rightsAsJson"])
    assert 2600 < len(admin) < 3900  # a full-rights token is as large as real ones (§5)


def test_client_credentials_needs_tenant_and_service_consent(client, world):
    r = token_call(client, {"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = token_call(client, {"grant_type": "client_credentials"}, TenantId=str(TENANT))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"

    world.issue_grant(TENANT, 1, {"companyinformation"}, service=True)
    r = token_call(client, {"grant_type": "client_credentials"}, TenantId=str(TENANT))
    assert r.status_code == 200
    body = r.json()
    assert "refresh_token" not in body and body["expires_in"] == 3600 and body["scope"] == "companyinformation"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["tenantId"] == TENANT and claims["userId"] != 1  # the service account's own user
    world.remove_user(TENANT, 1)  # the approving admin leaving does not break a service account
    assert api(client, "companyinformation", body["access_token"]).status_code == 200
    world.remove_integration(TENANT)
    assert token_call(client, {"grant_type": "client_credentials"}, TenantId=str(TENANT)).status_code == 400
    assert error_code(api(client, "companyinformation", body["access_token"])) == 2000310


def test_service_consent_end_to_end(client):
    code = code_from(consent(client, scope="companyinformation", account_type="service"))
    assert token_call(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}).status_code == 200
    assert token_call(client, {"grant_type": "client_credentials"}, TenantId=str(TENANT)).status_code == 200


def test_revoke_kills_refresh_but_not_access(client, world):
    grant = world.issue_grant(TENANT, 1, {"companyinformation"})
    r = client.post("/oauth-v1/revoke", data={"token_type_hint": "refresh_token", "token": grant["refresh_token"]},
                    headers={"Authorization": BASIC})
    assert r.json() == {"revoked": True}
    assert token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}).status_code == 400
    assert api(client, "companyinformation", grant["access_token"]).status_code == 200


@pytest.mark.parametrize("remove", [lambda w: w.remove_integration(TENANT), lambda w: w.remove_user(TENANT, 1)])
def test_removed_integration_or_user_kills_tokens(client, world, remove):
    grant = world.issue_grant(TENANT, 1, {"companyinformation"})
    remove(world)
    r = api(client, "companyinformation", grant["access_token"])
    assert r.status_code == 401
    assert r.json() == {"ErrorInformation": {"error": 1, "message": "Invalid login", "code": 2000310}}
    r = token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
    assert r.json()["error_description"] == "Invalid refresh token"


def test_clock_expires_access_and_refresh_tokens(client, world):
    grant = world.issue_grant(TENANT, 1, {"companyinformation"})
    world.advance(3601)
    assert error_code(api(client, "companyinformation", grant["access_token"])) == 2000310
    fresh = token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}).json()
    assert api(client, "companyinformation", fresh["access_token"]).status_code == 200
    world.advance(45 * 86400 + 1)
    assert token_call(client, {"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]}).status_code == 400


def test_token_of_another_app_is_refused(client, world):
    grant = world.issue_grant(TENANT, 1, {"companyinformation"}, client_id="someone-else")
    assert error_code(api(client, "companyinformation", grant["access_token"])) == 2000310
    assert token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}).status_code == 400


# ---- REST checks -----------------------------------------------------------------------------------
def test_scope_licence_and_user_rights(client, world):
    admin = world.issue_grant(TENANT, 1, {"companyinformation", "invoice", "profile"})["access_token"]
    r = api(client, "supplierinvoices", admin)
    assert r.status_code == 403 and error_code(r) == 2000663  # scope not in the token
    assert api(client, "invoices", admin).json() == {
        "Invoices": [], "MetaInformation": {"@TotalResources": 0, "@TotalPages": 1, "@CurrentPage": 1}}
    assert api(client, "me", admin).json()["MeInformation"] == {
        "Id": "1", "Name": "Anna Admin", "Email": "anna@acme.example", "SysAdmin": True, "Locale": "sv"}

    globex = world.issue_grant(OTHER, 1, {"companyinformation", "salary", "customer"})["access_token"]
    r = api(client, "employees", globex)
    assert (r.status_code, error_code(r)) == (400, 2001101)  # no Lön licence
    assert api(client, "customers", globex).status_code == 200  # kundfaktura opens customer
    world.set_licences(OTHER, {"lon"})
    assert api(client, "employees", globex).status_code == 200
    assert error_code(api(client, "customers", globex)) == 2001101

    bo = world.issue_grant(TENANT, 2, {"companyinformation", "invoice", "customer", "bookkeeping", "profile"})
    bo = bo["access_token"]
    assert api(client, "companyinformation", bo).status_code == 200  # the probe still passes
    assert api(client, "vouchers", bo).status_code == 200
    r = api(client, "customers", bo)
    assert (r.status_code, error_code(r)) == (403, 2000663)  # scope in the token, user lacks the right
    r = api(client, "invoices", bo)
    assert (r.status_code, error_code(r)) == (403, 2001339)
    assert api(client, "me", bo).json()["MeInformation"]["SysAdmin"] is False


@pytest.mark.parametrize("headers, code", [
    ({}, 2000311),
    ({"Authorization": "Bearer"}, 2000311),
    ({"Authorization": "Bearer not-a-jwt"}, 2000311),
    ({"Authorization": "Basic abc"}, 2000311),
])
def test_missing_or_garbled_credentials(client, headers, code):
    r = client.get("/3/companyinformation", headers={**JSON, **headers})
    assert r.status_code == 401
    assert r.json() == {"ErrorInformation": {
        "error": 1, "message": "Kan inte logga in, access-token eller client-secret saknas(2).", "code": code}}


def test_legacy_and_tampered_tokens(client, world):
    legacy = world.legacy_token(TENANT)
    assert error_code(client.get("/3/companyinformation", headers={"Access-Token": legacy, "Client-Secret": "x", **JSON})) == 2000310
    assert error_code(api(client, "companyinformation", legacy)) == 2000311
    token = world.issue_grant(TENANT, 1, {"companyinformation"})["access_token"]
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}AAAA"
    assert error_code(api(client, "companyinformation", tampered)) == 2000310


def test_wrong_accept_unknown_path_and_forced_answers(client, world):
    token = world.issue_grant(TENANT, 1, {"companyinformation", "supplierinvoice"})["access_token"]
    r = api(client, "companyinformation", token, Accept="application/xml")
    assert (r.status_code, error_code(r)) == (400, 1000030)
    r = api(client, "nosuchthing", token)
    assert (r.status_code, error_code(r)) == (404, 2000423)
    world.force(TENANT, "/3/supplierinvoices", 403, {"ErrorInformation": {"error": 1, "message": "Ej autentiserad", "code": 2003275}})
    r = api(client, "supplierinvoices", token)
    assert (r.status_code, error_code(r)) == (403, 2003275)
    world.force(TENANT, "/3/companyinformation", 500, None)
    r = api(client, "companyinformation", token)
    assert (r.status_code, r.content) == (500, b"")
    world.unforce(TENANT)
    assert api(client, "companyinformation", token).status_code == 200


def test_pascal_error_style(client, world):
    world.error_style = "pascal"
    grant = world.issue_grant(TENANT, 1, {"companyinformation"})
    r = api(client, "invoices", grant["access_token"])
    assert r.json() == {"ErrorInformation": {"Error": 1, "Message": "Har inte behörighet för scope", "Code": "2000663"}}
    world.revoke(grant["refresh_token"])
    r = token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
    assert (r.status_code, r.json()) == (400, {"message": "Invalid refresh token"})
    world.advance(3601)
    assert api(client, "companyinformation", grant["access_token"]).json()["ErrorInformation"]["Message"] == "Ogiltig inloggning"


# ---- limits and outages ----------------------------------------------------------------------------
def test_rate_limit_per_client_and_tenant(client, world):
    acme = world.issue_grant(TENANT, 1, {"companyinformation"})["access_token"]
    globex = world.issue_grant(OTHER, 1, {"companyinformation"})["access_token"]
    statuses = [api(client, "companyinformation", acme).status_code for _ in range(25)]
    assert statuses == [200] * 25
    r = api(client, "companyinformation", acme)
    assert r.status_code == 429 and r.json() == {"message": "Too many requests"}
    assert 1 <= int(r.headers["Retry-After"]) <= 5
    assert api(client, "companyinformation", globex).status_code == 200  # another tenant has its own window
    world.advance(5.01)
    assert api(client, "companyinformation", acme).status_code == 200
    assert world.api_calls[25]["status"] == 429 and world.api_calls[25]["tenant_id"] == TENANT


@pytest.mark.parametrize("mode, status, check", [
    ("html503", 503, lambda r: r.headers["content-type"].startswith("text/html") and "<html>" in r.text),
    ("empty500", 500, lambda r: r.content == b""),
    ("no_code", 503, lambda r: r.json() == {"ErrorInformation": {"message": "Service unavailable"}}),
])
def test_outage_modes(client, world, mode, status, check):
    grant = world.issue_grant(TENANT, 1, {"companyinformation"})
    world.outage = mode
    r = api(client, "companyinformation", grant["access_token"])
    assert r.status_code == status and check(r)
    r = token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
    assert r.status_code == status
    world.outage = None  # the failed refresh did not consume the token
    assert token_call(client, {"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]}).status_code == 200


def test_outage_scope_tenants_and_hang(client, world):
    acme = world.issue_grant(TENANT, 1, {"companyinformation"})
    globex = world.issue_grant(OTHER, 1, {"companyinformation"})
    world.outage, world.outage_scope, world.outage_tenants = "html503", "token", {TENANT}
    assert api(client, "companyinformation", acme["access_token"]).status_code == 200  # API is up
    assert token_call(client, {"grant_type": "refresh_token", "refresh_token": acme["refresh_token"]}).status_code == 503
    assert token_call(client, {"grant_type": "refresh_token", "refresh_token": globex["refresh_token"]}).status_code == 200
    world.outage, world.outage_scope, world.outage_tenants, world.hang_seconds = "hang", "api", None, 0.3
    with pytest.raises(httpx.ReadTimeout):
        client.get("/3/companyinformation", headers={"Authorization": f"Bearer {acme['access_token']}", **JSON},
                   timeout=0.1)


# ---- control API -----------------------------------------------------------------------------------
def test_control_api_builds_a_world_over_http(server):
    server.world = World()
    with httpx.Client(base_url=server.url, timeout=5) as c:
        assert c.post("/_sandbox/companies", json={"tenant_id": 42, "name": "Http AB", "licences": ["bokforing"]}).status_code == 200
        assert c.post("/_sandbox/users", json={"tenant_id": 42, "user_id": 7, "name": "Hugo"}).status_code == 200
        grant = c.post("/_sandbox/grants", json={"tenant_id": 42, "user_id": 7, "scopes": ["companyinformation"]}).json()
        assert set(grant) >= {"access_token", "refresh_token", "expires_at", "scope", "expires_in"}
        assert api(c, "companyinformation", grant["access_token"]).status_code == 200
        cfg = c.post("/_sandbox/config", json={"rate_limit": None, "error_style": "pascal", "latency": 0}).json()
        assert cfg["rate_limit"] is None and cfg["error_style"] == "pascal"
        assert c.post("/_sandbox/config", json={"outage": "meteor"}).status_code == 400
        assert c.post("/_sandbox/force", json={"tenant_id": 42, "path": "/3/companyinformation", "status": 503,
                                               "body": "<html>down</html>"}).json() == {"ok": True}
        assert api(c, "companyinformation", grant["access_token"]).status_code == 503
        assert c.post("/_sandbox/advance", json={"seconds": 3601}).status_code == 200
        assert api(c, "companyinformation", grant["access_token"]).status_code == 401
        assert c.post("/_sandbox/remove_integration", json={"tenant_id": 42}).json() == {"ok": True}
        stats = c.get("/_sandbox/stats").json()
        assert stats["api_calls_count"] == 3 and stats["api_calls_by_status"] == {"200": 1, "503": 1, "401": 1}
        assert c.post("/_sandbox/reset_stats").json() == {"ok": True}
        assert c.get("/_sandbox/stats").json()["api_calls_count"] == 0
        assert c.post("/_sandbox/users", json={"tenant_id": 999, "user_id": 1, "name": "x"}).status_code == 400


def test_demo_world_and_urls():
    world = demo_world()
    assert {c for c in (1234567, 2345678, 3456789) if world.company(c)} == {1234567, 2345678, 3456789}
    with SandboxServer(world) as srv:
        assert srv.auth_url == srv.url + "/oauth-v1" and srv.api_url == srv.url + "/3"
        assert httpx.get(srv.url + "/_sandbox/health").json()["status"] == "ok"
