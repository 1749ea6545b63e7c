"""The cause catalogue: complete, bilingual, safe to format, and exact about who does what."""
from __future__ import annotations

import re
import string

import pytest

from bot.diagnosis import catalogue
from bot.diagnosis.catalogue import CATALOGUE, CauseEntry, entry, steps_for, summary_for
from bot.diagnosis.model import CONSENT_FIXES, Audience, Cause, Step

PARAM_NAMES = {"tenant", "tenant_id", "missing_scopes", "unrequestable_scopes", "resource", "message", "code",
               "status", "retry_after", "reason", "setting", "affected"}
ALL_PARAMS = {
    "tenant": "Acme AB",
    "tenant_id": "acme",
    "missing_scopes": "invoice, supplierinvoice",
    "unrequestable_scopes": "salary",
    "resource": "supplier invoices",
    "message": "Det finns ingen aktiv licens för önskat scope",
    "code": "2001101",
    "status": "503",
    "retry_after": "60 s",
    "reason": "Fortnox rejected the refresh token: Invalid refresh token",
    "setting": "FORTNOX_REDIRECT_URI",
    "affected": "12 tenants",
}
NO_CONSENT_FIX = (Cause.CLIENT_CREDENTIALS_INVALID, Cause.SCOPE_NOT_REQUESTABLE, Cause.LICENSE_MISSING,
                  Cause.FORTNOX_UNAVAILABLE, Cause.RATE_LIMITED)
OPERATOR_ONLY = (Cause.CLIENT_CREDENTIALS_INVALID, Cause.SCOPE_NOT_REQUESTABLE, Cause.BOT_MISCONFIGURED,
                 Cause.TENANT_UNKNOWN, Cause.RATE_LIMITED, Cause.FORTNOX_UNAVAILABLE)
CONSENT_WORDS = re.compile(r"consent|reconnect|connect again|aktiveringslänk|ansluta igen|aktivera igen|"
                           r"ny aktivering|godkänn", re.I)
NEGATION = re.compile(r"\b(not|cannot|no|inte|ingen|inget)\b", re.I)


def templates(e: CauseEntry):
    """Every (kind, English, Swedish) template pair of an entry."""
    yield "title", e.title, e.title_sv
    yield "summary", e.summary, e.summary_sv
    for en, sv in e.operator:
        yield "operator", en, sv
    for en, sv in e.customer_admin:
        yield "customer_admin", en, sv


def all_step_texts(cause: Cause, **params) -> list[str]:
    return [t for s in steps_for(cause, **params) for t in (s.text, s.text_sv)]


# ---- completeness ----

def test_every_cause_has_exactly_one_entry():
    assert set(CATALOGUE) == set(Cause)
    assert len(catalogue._ENTRIES) == len(Cause)
    for cause, e in CATALOGUE.items():
        assert e.cause is cause
        assert entry(cause) is e
        assert entry(str(cause)) is e  # plain strings from JSON work too


def test_catalogue_is_read_only():
    with pytest.raises(TypeError):
        CATALOGUE[Cause.HEALTHY] = CATALOGUE[Cause.TOKEN_REFRESHED]  # type: ignore[index]


@pytest.mark.parametrize("cause", list(Cause))
def test_titles_summaries_and_who_fixes_are_filled_in_both_languages(cause):
    e = entry(cause)
    for text in (e.title, e.title_sv, e.summary, e.summary_sv, e.who_fixes):
        assert text.strip()
    assert len(e.title) <= 60 and len(e.title_sv) <= 60


@pytest.mark.parametrize("cause", list(Cause))
def test_swedish_differs_from_english(cause):
    for kind, en, sv in templates(entry(cause)):
        assert en != sv, (kind, en)
    assert summary_for(cause, "sv", **ALL_PARAMS) != summary_for(cause, "en", **ALL_PARAMS)
    for step in steps_for(cause, **ALL_PARAMS):
        assert step.text != step.text_sv


# ---- formatting never fails ----

@pytest.mark.parametrize("params", [{}, ALL_PARAMS, dict.fromkeys(PARAM_NAMES, ""), dict.fromkeys(PARAM_NAMES)],
                         ids=["empty", "all", "blank", "none"])
@pytest.mark.parametrize("cause", list(Cause))
def test_every_template_formats_without_raising_and_leaves_no_braces(cause, params):
    outputs = [summary_for(cause, "en", **params), summary_for(cause, "sv", **params)]
    outputs += all_step_texts(cause, **params)
    for text in outputs:
        assert "{" not in text and "}" not in text, text
        assert text.strip()
        assert "None" not in text


@pytest.mark.parametrize("cause", list(Cause))
def test_templates_use_only_known_params_and_no_secrets(cause):
    for kind, en, sv in templates(entry(cause)):
        for template in (en, sv):
            fields = {name for _, name, spec, conv in string.Formatter().parse(template) if name is not None}
            assert fields <= PARAM_NAMES, (kind, template)
            assert not any(re.search(r"token|secret|password|key", f, re.I) for f in fields)


def test_unknown_params_and_odd_values_are_harmless():
    text = summary_for(Cause.REACTIVATION_REQUIRED, tenant="{evil}", reason="50% {0} }{", unknown="x", code=2000310)
    assert "{evil}" in text and "50% {0} }{" in text  # values are inserted verbatim, never re-formatted
    assert summary_for(Cause.RATE_LIMITED, retry_after=None) == summary_for(Cause.RATE_LIMITED)


def test_missing_params_render_as_words_in_the_right_language():
    en = summary_for(Cause.SCOPES_MISSING)
    sv = summary_for(Cause.SCOPES_MISSING, "sv")
    assert "this customer" in en and "the missing scopes" in en
    assert "den här kunden" in sv and "de behörigheter som saknas" in sv
    step = steps_for(Cause.RATE_LIMITED)[0]
    assert "wait a moment" in step.text and "vänta en stund" in step.text_sv


def test_summary_language_selection():
    sv = summary_for(Cause.HEALTHY, "sv", tenant="Acme AB")
    assert sv == entry(Cause.HEALTHY).summary_sv.replace("{tenant}", "Acme AB")
    assert summary_for(Cause.HEALTHY, "sv-SE", tenant="Acme AB") == sv
    assert summary_for(Cause.HEALTHY, "SV", tenant="Acme AB") == sv
    assert summary_for(Cause.HEALTHY, "de", tenant="Acme AB") == summary_for(Cause.HEALTHY, tenant="Acme AB")


def test_params_are_filled_in():
    text = summary_for(Cause.SCOPES_MISSING, tenant="Acme AB", missing_scopes="invoice, supplierinvoice")
    assert "Acme AB" in text and "invoice, supplierinvoice" in text
    steps = steps_for(Cause.LICENSE_MISSING, **ALL_PARAMS)
    assert any('"Det finns ingen aktiv licens för önskat scope"' in s.text for s in steps)
    assert any("supplier invoices" in s.text_sv for s in steps)
    assert "Invalid refresh token" in summary_for(Cause.REACTIVATION_REQUIRED, **ALL_PARAMS)


@pytest.mark.parametrize("cause", list(Cause))
def test_steps_are_short(cause):
    for params in ({}, ALL_PARAMS):
        for text in all_step_texts(cause, **params):
            assert len(text) <= 200, text


# ---- who does what ----

@pytest.mark.parametrize("cause", [Cause.HEALTHY, Cause.TOKEN_REFRESHED])
def test_resolved_causes_have_no_steps(cause):
    e = entry(cause)
    assert e.operator == () and e.customer_admin == ()
    assert steps_for(cause, **ALL_PARAMS) == ()


def test_token_refreshed_summary_says_it_healed():
    text = summary_for(Cause.TOKEN_REFRESHED).lower()
    assert "expired" in text and "refreshed" in text and "accepts it now" in text


@pytest.mark.parametrize("cause", list(Cause))
def test_steps_for_puts_operator_steps_before_customer_admin_steps(cause):
    steps = steps_for(cause, **ALL_PARAMS)
    assert all(isinstance(s, Step) for s in steps)
    audiences = [s.audience for s in steps]
    assert audiences == sorted(audiences, key=[Audience.OPERATOR, Audience.CUSTOMER_ADMIN].index)
    e = entry(cause)
    assert audiences.count(Audience.OPERATOR) == len(e.operator)
    assert audiences.count(Audience.CUSTOMER_ADMIN) == len(e.customer_admin)
    assert [s.to_json(i)["n"] for i, s in enumerate(steps, 1)] == list(range(1, len(steps) + 1))


@pytest.mark.parametrize("cause", OPERATOR_ONLY)
def test_operator_only_causes_give_the_customer_nothing_to_do(cause):
    assert entry(cause).customer_admin == ()


@pytest.mark.parametrize("cause", NO_CONSENT_FIX)
def test_no_consent_as_the_fix_where_consent_cannot_help(cause):
    assert cause not in CONSENT_FIXES
    steps = steps_for(cause, **ALL_PARAMS)
    assert not any(s.audience == Audience.CUSTOMER_ADMIN and re.search("godkänn|consent", s.text + s.text_sv, re.I)
                   for s in steps)
    assert not any("Godkänn" in t for t in all_step_texts(cause, **ALL_PARAMS))
    consent_steps = [s for s in steps if CONSENT_WORDS.search(s.text) or CONSENT_WORDS.search(s.text_sv)]
    if cause == Cause.SCOPE_NOT_REQUESTABLE:
        # A consent is only the follow-up once the operator has registered the scope; it starts with the warning.
        assert NEGATION.search(steps[0].text) and "reconnect" in steps[0].text
        assert "cannot help" in steps[0].text
        register = next(i for i, s in enumerate(steps) if "Developer Portal" in s.text)
        later = [i for i, s in enumerate(steps) if i > 0 and s in consent_steps]
        assert later and all(i > register for i in later)
    else:
        assert consent_steps or cause in (Cause.RATE_LIMITED,), "the steps should warn that consent cannot help"
        for s in consent_steps:
            assert NEGATION.search(s.text) and NEGATION.search(s.text_sv), s


def test_client_credentials_invalid_points_at_the_developer_portal():
    text = " ".join(s.text for s in steps_for(Cause.CLIENT_CREDENTIALS_INVALID))
    for word in ("FORTNOX_CLIENT_ID", "FORTNOX_CLIENT_SECRET", "Developer Portal", "restart", "re-run", "NOT"):
        assert word in text


def test_license_missing_addresses_the_customer_admin():
    e = entry(Cause.LICENSE_MISSING)
    assert e.customer_admin
    text = " ".join(en for en, _ in e.customer_admin)
    assert "Tilläggsbeställning" in text and "{resource}" in text and '"{message}"' in text


@pytest.mark.parametrize("cause", [Cause.REACTIVATION_REQUIRED, Cause.SCOPES_MISSING, Cause.LEGACY_AUTH,
                                   Cause.CREDENTIALS_MISSING, Cause.USER_PERMISSIONS])
def test_consent_causes_walk_the_admin_through_fortnox_consent_page(cause):
    e = entry(cause)
    assert e.operator and e.customer_admin
    admin_sv = " ".join(sv for _, sv in e.customer_admin)
    admin_en = " ".join(en for en, _ in e.customer_admin)
    assert "Godkänn & aktivera" in admin_sv and "Godkänn & aktivera" in admin_en
    assert "systemadministratör" in admin_sv.lower() and "system administrator" in admin_en


def test_reactivation_required_covers_bureau_users_reason_and_what_happens_next():
    e = entry(Cause.REACTIVATION_REQUIRED)
    admin = " ".join(en + " " + sv for en, sv in e.customer_admin)
    assert "Digital byrå" in admin and "Aktivering" in admin and "re-runs the failed exports" in admin
    assert "{reason}" in e.summary and "{reason}" in e.summary_sv
    assert any("approve" in en for en, _ in e.operator)


def test_scopes_missing_names_the_scopes():
    steps = steps_for(Cause.SCOPES_MISSING, missing_scopes="invoice, supplierinvoice")
    assert any(s.audience == Audience.CUSTOMER_ADMIN and "invoice, supplierinvoice" in s.text_sv for s in steps)


def test_user_permissions_recommends_system_administrator_or_service_account():
    e = entry(Cause.USER_PERMISSIONS)
    admin = " ".join(en for en, _ in e.customer_admin)
    assert "Recommended" in admin and "service account" in admin and "{resource}" in admin


def test_legacy_auth_mentions_cutoff_and_cleanup():
    e = entry(Cause.LEGACY_AUTH)
    assert "2025-04-30" in e.summary and "OAuth2" in e.summary
    assert any("Hantera användare" in en for en, _ in e.customer_admin)


def test_rate_limit_and_outage_say_wait():
    rate = " ".join(s.text for s in steps_for(Cause.RATE_LIMITED, retry_after="60 s"))
    assert "wait 60 s" in rate and "25 requests per 5 seconds" in rate
    outage = summary_for(Cause.FORTNOX_UNAVAILABLE, status="503")
    assert "503" in outage and "untouched" in outage


def test_bot_misconfigured_and_tenant_unknown_give_concrete_commands():
    misconf = " ".join(s.text for s in steps_for(Cause.BOT_MISCONFIGURED, setting="FORTNOX_REDIRECT_URI"))
    assert "FORTNOX_REDIRECT_URI" in misconf and "ENCRYPTION_KEY" in misconf
    unknown = " ".join(s.text for s in steps_for(Cause.TENANT_UNKNOWN, tenant_id="acme"))
    assert "fortnox-bot tenant add acme" in unknown and "fortnox-bot connect acme" in unknown
