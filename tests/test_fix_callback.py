"""`GET /oauth/fortnox/callback`: every way the redirect can come back (F-F1, F-F2, reference §12 rows 14/15)."""
from __future__ import annotations

import base64
from datetime import timedelta

import httpx
from sqlmodel import select

from storage.models import AuditEntry, Connection, ConsentState, ReactivationRequest
from tests.support.consent import approve_directly, callback_params, consent_in_fortnox, failing_incident
from tests.support.seed import CLIENT_ID, CLIENT_SECRET, TENANT_CHANNEL, seed_tenant
from tests.support.slack import message_text, only_message

CALLBACK = "/oauth/fortnox/callback"


def snapshot(store) -> tuple:
    """Everything a callback could write."""
    with store.db.session() as s:
        return (
            [(c.state_hash, c.used_at, c.outcome)
             for c in s.exec(select(ConsentState).order_by(ConsentState.state_hash))],
            [(r.id, r.status, r.live_key)
             for r in s.exec(select(ReactivationRequest).order_by(ReactivationRequest.id))],
            [(c.tenant_id, c.generation, c.access_token_enc, c.state) for c in s.exec(select(Connection))],
            len(list(s.exec(select(AuditEntry)))),
        )


def code_grants(world) -> list[dict]:
    return [c for c in world.token_calls if c["grant_type"] == "authorization_code"]


def callback(server, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{CALLBACK}", params=params, timeout=30)


def thread_texts(slack, incident) -> list[str]:
    return [m.text for m in slack.thread(incident.channel, incident.message_ts)]


# --- F-F1 -------------------------------------------------------------------------------------------
def test_F_F1_customer_cancels_in_fortnox(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    tokens_before = store.connections.load("acme")
    world.reset_stats()

    redirect = consent_in_fortnox(decision.link, company=555, user=7, action="cancel")
    params = callback_params(redirect)
    assert params["error"] == "access_denied"
    page = httpx.get(redirect.headers["location"], timeout=30)
    server.drain()

    assert page.status_code == 200
    assert "<h1>Aktiveringen avbröts</h1>" in page.text and "Activation cancelled" in page.text
    assert world.token_calls == []                                     # no token call
    after = store.connections.load("acme")
    assert (after.generation, after.access_token, after.refresh_token) == \
        (tokens_before.generation, tokens_before.access_token, tokens_before.refresh_token)
    state = store.consents.peek(params["state"])
    assert state.used_at is not None and state.outcome == "declined"  # used up
    request = store.requests.get(decision.request.id)
    assert (request.status, request.outcome, request.live_key) == ("declined", "access_denied", None)
    inc = store.incidents.get(incident_id)
    assert any(t.startswith("↩️ The customer did not approve the activation in Fortnox")
               for t in thread_texts(slack, inc))
    assert "The customer cancelled the activation in Fortnox" in message_text(only_message(slack, TENANT_CHANNEL))
    assert [r.action for r in store.audit.for_tenant("acme")][-1] == "consent_declined"

    # The used state cannot be replayed, and the card offers a new request.
    again = httpx.get(redirect.headers["location"], timeout=30)
    assert again.status_code == 400 and "Länken är redan använd" in again.text


def test_F_F1_callback_without_any_parameters(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    approve_directly(server, incident_id)
    before = snapshot(store)

    page = callback(server)
    assert page.status_code == 400
    assert "<h1>Aktiveringen slutfördes inte</h1>" in page.text
    assert "låst" in page.text and "locked Fortnox company account" in page.text
    assert snapshot(store) == before


def test_F_F1_locked_company_comes_back_empty_and_the_link_still_works(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    world.company(555).locked = True   # unpaid: Fortnox redirects back with nothing at all (§12 row 14)
    before = snapshot(store)

    redirect = consent_in_fortnox(decision.link, company=555, user=7)
    assert redirect.status_code == 302 and redirect.headers["location"] == f"{server.url}{CALLBACK}"
    page = httpx.get(redirect.headers["location"], timeout=30)
    assert page.status_code == 400 and "locked Fortnox company account" in page.text
    assert snapshot(store) == before and code_grants(world) == []

    world.company(555).locked = False   # the customer pays; the same link now completes
    page = httpx.get(consent_in_fortnox(decision.link, company=555, user=7).headers["location"], timeout=30)
    assert page.status_code == 200 and "Integrationen är aktiverad" in page.text


# --- F-F2 -------------------------------------------------------------------------------------------
def test_F_F2_forged_state_with_a_valid_code(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    code = callback_params(consent_in_fortnox(decision.link, company=555, user=7))["code"]
    world.reset_stats()
    before = snapshot(store)

    for forged in ("forged", "x" * 2000, "\u00e5\u00e4\u00f6"):
        page = callback(server, code=code, state=forged)
        assert page.status_code == 400 and "<h1>Länken är ogiltig</h1>" in page.text
    assert world.token_calls == [] and snapshot(store) == before


def test_F_F2_state_of_acme_cannot_bind_tokens_to_globex(server, store, world, slack, sandbox):
    acme_incident = failing_incident(server, store, world, "acme", company=555)
    globex_incident = failing_incident(server, store, world, "globex", company=556, channel=None)
    decision = approve_directly(server, acme_incident)
    params = callback_params(consent_in_fortnox(decision.link, company=555, user=7))
    globex_request = server.call(server.bot.fix.reactivations.request(globex_incident, by="U0OPERATOR")).request
    # A state issued for acme but naming globex's request, as a tampered row or a mix-up would.
    crossed = store.consents.issue(tenant_id="acme", scopes={"invoice"}, ttl=timedelta(hours=1),
                                   request_id=globex_request.id)
    world.reset_stats()
    before = snapshot(store)

    page = callback(server, code=params["code"], state=params["state"], tenant="globex")
    assert page.status_code == 400 and "hör till ett annat företag" in page.text
    page = callback(server, code=params["code"], state=crossed)
    assert page.status_code == 400 and "Länken är ogiltig" in page.text
    assert world.token_calls == [] and snapshot(store) == before

    # acme's state still completes acme's own consent.
    page = callback(server, code=params["code"], state=params["state"])
    assert page.status_code == 200
    assert store.connections.load("acme").company_id == "555"
    assert store.connections.load("globex").state == "dead"


def test_F_F2_the_same_state_twice(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    params = callback_params(consent_in_fortnox(decision.link, company=555, user=7))
    world.reset_stats()

    first = callback(server, **params)
    assert first.status_code == 200 and len(code_grants(world)) == 1
    server.drain()
    before = snapshot(store)
    second = callback(server, **params)
    assert second.status_code == 400 and "<h1>Länken är redan använd</h1>" in second.text
    # a fresh code with the spent state does not work either
    fresh = callback_params(consent_in_fortnox(decision.link, company=555, user=7))["code"]
    assert callback(server, code=fresh, state=params["state"]).status_code == 400
    assert len(code_grants(world)) == 1 and snapshot(store) == before


def test_expired_state_is_refused_without_a_token_call(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    params = callback_params(consent_in_fortnox(decision.link, company=555, user=7))
    with store.db.session() as s:
        for row in s.exec(select(ConsentState)):
            row.expires_at = row.created_at - timedelta(seconds=1)
            s.add(row)
    world.reset_stats()
    before = snapshot(store)
    page = callback(server, **params)
    assert page.status_code == 400 and "<h1>Länken gäller inte längre</h1>" in page.text
    assert world.token_calls == [] and snapshot(store) == before


def test_link_of_a_request_that_expired_meanwhile_is_refused(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    params = callback_params(consent_in_fortnox(decision.link, company=555, user=7))
    store.requests.expire(decision.request.id, now=decision.link_expires_at + timedelta(seconds=1))
    world.reset_stats()
    page = callback(server, **params)
    assert page.status_code == 400 and "Länken gäller inte längre" in page.text
    assert world.token_calls == [] and store.consents.peek(params["state"]).used_at is None


# --- company, exchange and verification --------------------------------------------------------------
def test_bureau_user_picks_the_wrong_company(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    world.add_company(777, "Another Client AB")
    world.add_user(777, 7, "Bureau consultant")
    decision = approve_directly(server, incident_id)
    tokens_before = store.connections.load("acme")
    world.reset_stats()

    page = httpx.get(consent_in_fortnox(decision.link, company=777, user=7).headers["location"], timeout=30)
    server.drain()

    assert page.status_code == 400 and "<h1>Fel företag valdes</h1>" in page.text and "Digital byrå" in page.text
    assert "Acme AB" in page.text
    assert len(code_grants(world)) == 1                          # exchanged once, then refused
    after = store.connections.load("acme")
    assert (after.generation, after.access_token) == (tokens_before.generation, tokens_before.access_token)
    request = store.requests.get(decision.request.id)
    assert (request.status, request.outcome) == ("failed", "wrong_company")
    inc = store.incidents.get(incident_id)
    assert inc.status == "open" and inc.cause == "reactivation_required"
    assert any("another Fortnox company (database number 777, expected 555)" in t for t in thread_texts(slack, inc))
    failed = [r for r in store.audit.for_tenant("acme") if r.action == "verification_failed"]
    assert [r.detail for r in failed] == [{"stage": "company", "expected": "555", "got": "777"}]


def test_code_already_used_gives_a_clear_page_and_stores_nothing(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    params = callback_params(consent_in_fortnox(decision.link, company=555, user=7))
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    stolen = httpx.post(f"{sandbox.auth_url}/token", headers={"Authorization": f"Basic {basic}"},
                        data={"grant_type": "authorization_code", "code": params["code"],
                              "redirect_uri": f"{server.url}{CALLBACK}"})
    assert stolen.status_code == 200   # someone else exchanged the code first
    tokens_before = store.connections.load("acme")

    page = callback(server, **params)
    server.drain()
    assert page.status_code == 400 and "<h1>Aktiveringen kunde inte slutföras</h1>" in page.text
    assert "Invalid authorization code" not in page.text and "invalid_grant" not in page.text
    assert store.connections.load("acme").generation == tokens_before.generation
    assert store.requests.get(decision.request.id).status == "failed"
    failed = [r.detail for r in store.audit.for_tenant("acme") if r.action == "verification_failed"]
    assert failed == [{"stage": "code_exchange", "error": "invalid_grant"}]


def test_fortnox_down_during_the_code_exchange(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    params = callback_params(consent_in_fortnox(decision.link, company=555, user=7))
    world.outage, world.outage_scope = "html503", "token"
    generation = store.connections.load("acme").generation

    page = callback(server, **params)
    assert page.status_code == 502 and "<h1>Fortnox svarar inte just nu</h1>" in page.text
    assert "Service Unavailable" not in page.text and "underhåll" not in page.text   # never Fortnox's own body
    assert store.connections.load("acme").generation == generation


def test_verification_finds_another_problem(server, store, world, slack, sandbox):
    incident_id = failing_incident(server, store, world)
    decision = approve_directly(server, incident_id)
    world.set_licences(555, {"bokforing"})   # invoices need Kundfaktura or Order: consent cannot fix that

    page = httpx.get(consent_in_fortnox(decision.link, company=555, user=7).headers["location"], timeout=30)
    server.drain()

    assert page.status_code == 200 and "<h1>Aktiveringen är mottagen, men något saknas</h1>" in page.text
    cred = store.connections.load("acme")
    assert cred.state == "active" and cred.generation == 2 and cred.access_token not in page.text
    inc = store.incidents.get(incident_id)
    assert inc.status == "open" and inc.cause == "license_missing"
    request = store.requests.get(decision.request.id)
    assert (request.status, request.outcome) == ("failed", "license_missing")
    assert any(t.startswith("⚠️ Consent received and the new tokens are stored, but verification still fails")
               and "license_missing" in t for t in thread_texts(slack, inc))
    assert [r.action for r in store.audit.for_tenant("acme")][-2:] == ["verification_failed", "diagnosed"]


def test_connect_link_without_a_request(server, store, world, slack, sandbox):
    """`fortnox-bot connect` links have no request: first connection, company id learnt from the token."""
    from bot.fix.consent import consent_link

    seed_tenant(store, world, "newco", company=901, grant=False, company_id_known=False)
    link = consent_link(server.settings, store, store.tenants.get("newco"), request_id=None, created_by="cli")
    page = httpx.get(consent_in_fortnox(link, company=901, user=7).headers["location"], timeout=30)
    assert page.status_code == 200 and "Integrationen är aktiverad" in page.text
    assert store.tenants.get("newco").company_id == "901"
    assert store.connections.load("newco").company_id == "901"
    assert [r.action for r in store.audit.for_tenant("newco")] == ["consent_received", "verified"]


def test_odd_callbacks_never_500(server, store, world, slack, sandbox):
    before = snapshot(store)
    for params in ({"state": ""}, {"code": "abc"}, {"error": "access_denied"}, {"state": "s", "state2": "x"},
                   {"error": "x" * 5000, "state": "y"}, {"state": "\x00"}):
        page = callback(server, **params)
        assert page.status_code == 400, params
        assert page.headers["content-type"].startswith("text/html")
    duplicated = httpx.get(f"{server.url}{CALLBACK}?state=a&state=b&code=c", timeout=10)
    assert duplicated.status_code == 400
    assert snapshot(store) == before
