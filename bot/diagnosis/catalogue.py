"""What each diagnosis cause means for people: title, summary and numbered steps, in English and Swedish.

Read it top to bottom like a table (one entry per ``Cause``). Facts live here as data; the only code
is the formatting at the bottom. Who fixes what follows ``shared/CONTRACT.md`` and the Fortnox
reference (``shared/reference/fortnox.md`` §2, §6, §7, §8, §11, §12).

Templates use ``{name}`` placeholders. Available params (plain, human-readable strings, NOT escaped:
renderers escape): ``tenant`` (display name), ``tenant_id``, ``missing_scopes``,
``unrequestable_scopes``, ``resource``, ``message`` (Fortnox's own error text), ``code``, ``status``,
``retry_after``, ``reason``, ``setting``, ``affected``. A missing, ``None`` or empty param renders as
a neutral word in the step's language (see ``_FALLBACK``); formatting never raises.

Writing rules for steps: short imperative sentences (at most 200 characters), Swedish in du-form,
Fortnox's own Swedish UI words ("Aktivering", "Godkänn & aktivera", "Digital byrå",
"Hantera användare", "Tilläggsbeställning"), and never a secret or token value as a placeholder.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from bot.diagnosis.model import Audience, Cause, Step


@dataclass(frozen=True)
class CauseEntry:
    cause: Cause
    title: str            # short heading, e.g. "Re-activation needed"
    title_sv: str
    summary: str          # one-sentence template for the summary line
    summary_sv: str
    who_fixes: str        # in English, e.g. "customer's Fortnox admin, via a consent link"
    operator: tuple[tuple[str, str], ...] = ()        # steps for our support operator: (English, Swedish)
    customer_admin: tuple[tuple[str, str], ...] = ()  # steps for the customer's Fortnox system administrator


# Shared wording, so the same click path reads the same everywhere.
_REQUEST_LINK = (
    "Click the reactivation button on the alert (or run `/fortnox reactivate {tenant_id}`) to request a consent link.",
    "Klicka på knappen för ny aktivering i larmet (eller kör `/fortnox reactivate {tenant_id}`) för att begära en "
    "aktiveringslänk.",
)
_GET_APPROVAL = (
    "Ask a bot admin to approve the request; the link then appears in the alert's thread.",
    "Be en bot-admin att godkänna begäran; länken dyker sedan upp i larmets tråd.",
)
_SEND_LINK = (
    "Send the link to the Fortnox system administrator at {tenant}, together with the customer steps below.",
    "Skicka länken till systemadministratören i Fortnox hos {tenant}, tillsammans med kundens steg nedan.",
)
_ADMIN_LOGIN = (
    "Open the link and log in to Fortnox as a system administrator (Systemadministratör) of the right company.",
    "Öppna länken och logga in i Fortnox som systemadministratör för rätt företag.",
)
_ADMIN_BUREAU = (
    'Accounting bureau users: pick the client company for {tenant} in "Digital byrå", not another client.',
    'Loggar du in som redovisningsbyrå? Välj klientföretaget för {tenant} i "Digital byrå", inte någon annan klient.',
)
_ADMIN_APPROVE = (
    'Under "Aktivering", check the requested permissions and click "Godkänn & aktivera".',
    'Kontrollera de begärda behörigheterna under "Aktivering" och klicka på "Godkänn & aktivera".',
)
_ADMIN_DONE = (
    "That's all: the bot verifies the connection and re-runs the failed exports.",
    "Sedan är du klar: boten kontrollerar anslutningen och kör de misslyckade exporterna igen.",
)


_ENTRIES: tuple[CauseEntry, ...] = (
    CauseEntry(
        cause=Cause.HEALTHY,
        title="No problem found",
        title_sv="Inget fel hittades",
        summary="Fortnox accepts the connection for {tenant} and every check passes now; "
                "the failure was temporary or has already been fixed.",
        summary_sv="Fortnox godkänner anslutningen för {tenant} och alla kontroller går igenom nu; "
                   "felet var tillfälligt eller har redan åtgärdats.",
        who_fixes="nobody",
    ),
    CauseEntry(
        cause=Cause.TOKEN_REFRESHED,
        title="Token refreshed automatically",
        title_sv="Token förnyades automatiskt",
        summary="The access token for {tenant} had expired; the bot refreshed it and Fortnox accepts it now. "
                "Nothing to do.",
        summary_sv="Åtkomsttoken för {tenant} hade gått ut; boten förnyade den och Fortnox godkänner den nu. "
                   "Du behöver inte göra något.",
        who_fixes="nobody (fixed automatically)",
    ),
    CauseEntry(
        cause=Cause.CREDENTIALS_MISSING,
        title="Credentials missing",
        title_sv="Inloggningsuppgifter saknas",
        summary="The bot has no usable Fortnox token stored for {tenant} (missing or malformed). Reason: {reason}.",
        summary_sv="Boten har ingen användbar Fortnox-token sparad för {tenant} (saknas eller är felaktig). "
                   "Orsak: {reason}.",
        who_fixes="our support operator (store the credentials again, or get a new consent from the customer's "
                  "Fortnox admin)",
        operator=(
            ("Check how the credentials for {tenant} were stored; store them again by piping JSON into "
             "`fortnox-bot tenant credentials {tenant_id}` (standard input only).",
             "Kontrollera hur inloggningsuppgifterna för {tenant} sparades; spara dem igen genom att skicka JSON "
             "till `fortnox-bot tenant credentials {tenant_id}` (endast via standard input)."),
            ("If there are no valid tokens to store, click the reactivation button on the alert and ask a bot admin "
             "to approve the request.",
             "Finns det inga giltiga tokens att spara, klicka på knappen för ny aktivering i larmet och be en "
             "bot-admin att godkänna begäran."),
            _SEND_LINK,
            ("If you stored the credentials yourself instead, re-run the diagnosis.",
             "Om du i stället sparade inloggningsuppgifterna själv, kör diagnosen igen."),
        ),
        customer_admin=(
            _ADMIN_LOGIN,
            _ADMIN_APPROVE,
            _ADMIN_DONE,
        ),
    ),
    CauseEntry(
        cause=Cause.CLIENT_CREDENTIALS_INVALID,
        title="Integration credentials rejected",
        title_sv="Integrationens inloggningsuppgifter nekas",
        summary="Fortnox rejects the integration's own client id/secret, so this affects {affected}, "
                "not just {tenant}. Reason: {reason}.",
        summary_sv="Fortnox nekar integrationens eget klient-id och klienthemlighet, så felet påverkar {affected}, "
                   "inte bara {tenant}. Orsak: {reason}.",
        who_fixes="our support operator, in Fortnox's Developer Portal",
        operator=(
            ("Do NOT send consent links to customers: a new consent cannot fix the integration's own credentials.",
             "Skicka INTE aktiveringslänkar till kunderna: en ny aktivering kan inte rätta integrationens egna "
             "inloggningsuppgifter."),
            ("Compare FORTNOX_CLIENT_ID and FORTNOX_CLIENT_SECRET with the app in Fortnox's Developer Portal: "
             "was the secret rotated?",
             "Jämför FORTNOX_CLIENT_ID och FORTNOX_CLIENT_SECRET med appen i Fortnox Developer Portal: "
             "har hemligheten bytts ut?"),
            ("Check in the portal that OAuth 2.0 is enabled for the client id.",
             "Kontrollera i portalen att OAuth 2.0 är aktiverat för klient-id:t."),
            ("Update the settings, restart the bot and re-run the diagnosis.",
             "Uppdatera inställningarna, starta om boten och kör diagnosen igen."),
        ),
    ),
    CauseEntry(
        cause=Cause.REACTIVATION_REQUIRED,
        title="Re-activation needed",
        title_sv="Ny aktivering krävs",
        summary="Fortnox no longer accepts the authorization for {tenant}, so the customer's Fortnox system "
                "administrator must activate the integration again. Reason: {reason}.",
        summary_sv="Fortnox godkänner inte längre behörigheten för {tenant}, så kundens systemadministratör i Fortnox "
                   "behöver aktivera integrationen igen. Orsak: {reason}.",
        who_fixes="customer's Fortnox admin, via a consent link",
        operator=(
            _REQUEST_LINK,
            _GET_APPROVAL,
            _SEND_LINK,
        ),
        customer_admin=(
            _ADMIN_LOGIN,
            _ADMIN_BUREAU,
            _ADMIN_APPROVE,
            _ADMIN_DONE,
        ),
    ),
    CauseEntry(
        cause=Cause.SCOPES_MISSING,
        title="Permissions (scopes) missing",
        title_sv="Behörigheter (scopes) saknas",
        summary="The Fortnox token for {tenant} lacks permissions its exports need ({missing_scopes}); "
                "a new consent that includes them fixes this.",
        summary_sv="Fortnox-token för {tenant} saknar behörigheter som exporterna behöver ({missing_scopes}); "
                   "en ny aktivering som tar med dem löser det.",
        who_fixes="customer's Fortnox admin, via a consent link with the new scopes",
        operator=(
            ("Click the reactivation button on the alert; the new consent link also asks for {missing_scopes}.",
             "Klicka på knappen för ny aktivering i larmet; den nya aktiveringslänken begär även {missing_scopes}."),
            _GET_APPROVAL,
            _SEND_LINK,
        ),
        customer_admin=(
            _ADMIN_LOGIN,
            _ADMIN_BUREAU,
            ('Under "Aktivering", check that {missing_scopes} are listed and click "Godkänn & aktivera".',
             'Kontrollera under "Aktivering" att {missing_scopes} finns med och klicka på "Godkänn & aktivera".'),
            _ADMIN_DONE,
        ),
    ),
    CauseEntry(
        cause=Cause.SCOPE_NOT_REQUESTABLE,
        title="Scope not registered on the app",
        title_sv="Scope saknas i appens registrering",
        summary="The exports for {tenant} need {unrequestable_scopes}, which the bot cannot request "
                "(not in FORTNOX_SCOPES or not registered on the app), so a new consent cannot fix this yet.",
        summary_sv="Exporterna för {tenant} behöver {unrequestable_scopes}, som boten inte kan begära "
                   "(saknas i FORTNOX_SCOPES eller i appens registrering), så en ny aktivering löser inte det än.",
        who_fixes="our support operator, in Fortnox's Developer Portal",
        operator=(
            ("Do not ask the customer to reconnect now: that cannot help until the app is registered for "
             "{unrequestable_scopes}.",
             "Be inte kunden att ansluta igen nu: det hjälper inte förrän appen är registrerad för "
             "{unrequestable_scopes}."),
            ("Register {unrequestable_scopes} on the integration's app in Fortnox's Developer Portal.",
             "Registrera {unrequestable_scopes} för integrationens app i Fortnox Developer Portal."),
            ("Add them to FORTNOX_SCOPES and restart the bot.",
             "Lägg till dem i FORTNOX_SCOPES och starta om boten."),
            ("Then re-run the diagnosis and request a consent link from the alert, so the customer can approve "
             "the new scopes.",
             "Kör sedan diagnosen igen och begär en aktiveringslänk från larmet, så att kunden kan godkänna "
             "de nya behörigheterna."),
        ),
    ),
    CauseEntry(
        cause=Cause.LICENSE_MISSING,
        title="Fortnox licence missing",
        title_sv="Licens saknas i Fortnox",
        summary="The token works, but the Fortnox company for {tenant} lacks the licence or module for {resource}; "
                "logging in or consenting again cannot help.",
        summary_sv="Token fungerar, men Fortnox-företaget för {tenant} saknar licens eller modul för {resource}; "
                   "att logga in eller aktivera igen hjälper inte.",
        who_fixes="customer's Fortnox admin (buy or assign the licence)",
        operator=(
            ("Tell the Fortnox system administrator at {tenant} to buy or assign the missing licence "
             "(customer steps below).",
             "Be systemadministratören i Fortnox hos {tenant} att köpa eller tilldela licensen som saknas "
             "(se kundens steg nedan)."),
            ("Do NOT send a consent link: consenting again cannot help while the licence is missing.",
             "Skicka INTE någon aktiveringslänk: en ny aktivering hjälper inte så länge licensen saknas."),
            ("Re-run the diagnosis when the customer confirms that the licence is in place.",
             "Kör diagnosen igen när kunden bekräftar att licensen är på plats."),
        ),
        customer_admin=(
            ('Log in to Fortnox as a system administrator. Fortnox said: "{message}"',
             'Logga in i Fortnox som systemadministratör. Fortnox svarade: "{message}"'),
            ('Buy the licence or module for {resource} under "Tilläggsbeställning", or assign it under '
             '"Hantera användare" (Licenser).',
             'Köp licensen eller modulen för {resource} under "Tilläggsbeställning", eller tilldela den under '
             '"Hantera användare" (Licenser).'),
            ("Check that the company also has an active integration (API) licence.",
             "Kontrollera också att företaget har en aktiv integrationslicens (API-licens)."),
            ("Tell support when it is done; you do not need to activate the integration again.",
             "Hör av dig till supporten när det är klart; du behöver inte aktivera integrationen igen."),
        ),
    ),
    CauseEntry(
        cause=Cause.USER_PERMISSIONS,
        title="Activating user lacks rights",
        title_sv="Användaren som aktiverade saknar behörighet",
        summary="The Fortnox user who activated the integration for {tenant} lacks the rights for {resource} "
                "or is not a system administrator.",
        summary_sv="Fortnox-användaren som aktiverade integrationen för {tenant} saknar behörighet för {resource} "
                   "eller är inte systemadministratör.",
        who_fixes="customer's Fortnox admin (re-activate as a system administrator, or grant the rights)",
        operator=(
            _REQUEST_LINK,
            _GET_APPROVAL,
            ("Send the link to the Fortnox system administrator at {tenant}; ask them to activate as a system "
             "administrator, not as the current user.",
             "Skicka länken till systemadministratören i Fortnox hos {tenant} och be om en aktivering som "
             "systemadministratör, inte som nuvarande användare."),
        ),
        customer_admin=(
            ('Recommended: open the link, log in as a system administrator (Systemadministratör) and click '
             '"Godkänn & aktivera" under "Aktivering".',
             'Rekommenderat: öppna länken, logga in som systemadministratör och klicka på "Godkänn & aktivera" '
             'under "Aktivering".'),
            ("If the link creates a service account, approve it as a system administrator; the connection then no "
             "longer depends on one person.",
             "Skapar länken ett tjänstekonto godkänner du det som systemadministratör; då hänger anslutningen inte "
             "längre på en enskild person."),
            ('Alternatively, give the user who activated the integration the rights for {resource} under '
             '"Hantera användare", then tell support.',
             'Alternativt ger du användaren som aktiverade integrationen behörighet för {resource} under '
             '"Hantera användare" och hör sedan av dig till supporten.'),
        ),
    ),
    CauseEntry(
        cause=Cause.LEGACY_AUTH,
        title="Retired legacy login",
        title_sv="Utfasad inloggningsmetod",
        summary="The Fortnox connection for {tenant} still uses the retired Access-Token/Client-Secret login, "
                "which cannot reach the API since 2025-04-30; it must move to OAuth2 with a new consent.",
        summary_sv="Fortnox-anslutningen för {tenant} använder fortfarande den utfasade inloggningen med "
                   "Access-Token/Client-Secret, som inte når API:t sedan 2025-04-30; den måste bytas till OAuth2 "
                   "via en ny aktivering.",
        who_fixes="our support operator and the customer's Fortnox admin (new OAuth2 consent)",
        operator=(
            ("Click the reactivation button on the alert to request an OAuth2 consent link, and ask a bot admin "
             "to approve it.",
             "Klicka på knappen för ny aktivering i larmet för att begära en OAuth2-aktiveringslänk och be en "
             "bot-admin att godkänna den."),
            _SEND_LINK,
            ('When the new connection is verified, make sure the legacy credential is gone: '
             '`fortnox-bot tenant list` should show {tenant_id} as "oauth".',
             'När den nya anslutningen är verifierad, kontrollera att den gamla inloggningen är borta: '
             '`fortnox-bot tenant list` ska visa {tenant_id} som "oauth".'),
        ),
        customer_admin=(
            _ADMIN_LOGIN,
            _ADMIN_APPROVE,
            ('Optional: afterwards, remove the old integration under "Hantera användare"; the new one is listed '
             'under "Hantera integrationer".',
             'Valfritt: ta sedan bort den gamla integrationen under "Hantera användare"; den nya finns under '
             '"Hantera integrationer".'),
        ),
    ),
    CauseEntry(
        cause=Cause.RATE_LIMITED,
        title="Rate limited by Fortnox",
        title_sv="Fortnox begränsar antalet anrop",
        summary="Fortnox is limiting requests for {tenant} (HTTP 429); this is temporary and the bot retries "
                "after {retry_after}.",
        summary_sv="Fortnox begränsar antalet anrop för {tenant} (HTTP 429); det är tillfälligt och boten försöker "
                   "igen om {retry_after}.",
        who_fixes="nobody (wait)",
        operator=(
            ("Nothing to fix now: wait {retry_after}; the bot retries on its own.",
             "Inget att åtgärda nu: vänta {retry_after}; boten försöker igen av sig själv."),
            ("If it keeps happening, check for parallel exports for {tenant} above Fortnox's limit of 25 requests "
             "per 5 seconds.",
             "Om det fortsätter, leta efter parallella exporter för {tenant} som går över Fortnox gräns på "
             "25 anrop per 5 sekunder."),
        ),
    ),
    CauseEntry(
        cause=Cause.FORTNOX_UNAVAILABLE,
        title="Fortnox unavailable",
        title_sv="Fortnox svarar inte",
        summary="Fortnox is not answering normally ({status}), so nothing could be checked for {tenant}; "
                "the stored tokens were left untouched.",
        summary_sv="Fortnox svarar inte som vanligt ({status}), så inget kunde kontrolleras för {tenant}; "
                   "de sparade tokens lämnades orörda.",
        who_fixes="nobody (wait for Fortnox)",
        operator=(
            ("Nothing to fix on our side or the customer's: do not send a consent link.",
             "Det finns inget att rätta hos oss eller hos kunden: skicka ingen aktiveringslänk."),
            ("If it lasts, check Fortnox's status page; the bot re-checks automatically.",
             "Om det håller i sig, titta på Fortnox driftstatus; boten kontrollerar igen automatiskt."),
        ),
    ),
    CauseEntry(
        cause=Cause.BOT_MISCONFIGURED,
        title="Bot misconfigured",
        title_sv="Fel i botens inställningar",
        summary="The bot's own setting {setting} is wrong ({reason}); this is ours to fix, not the customer's.",
        summary_sv="Botens egen inställning {setting} är fel ({reason}); det rättar vi, inte kunden.",
        who_fixes="our support operator (bot settings)",
        operator=(
            ("Fix the bot setting {setting} ({reason}) and restart the bot.",
             "Rätta botens inställning {setting} ({reason}) och starta om boten."),
            ("Redirect URI: FORTNOX_REDIRECT_URI must match the redirect URI registered in Fortnox's Developer "
             "Portal exactly.",
             "Omdirigerings-URI: FORTNOX_REDIRECT_URI måste stämma exakt med den som är registrerad i Fortnox "
             "Developer Portal."),
            ("Encryption: ENCRYPTION_KEY must still include the key the stored tokens were written with "
             "(new key first, old keys after).",
             "Kryptering: ENCRYPTION_KEY måste fortfarande innehålla nyckeln som de sparade tokens skrevs med "
             "(ny nyckel först, gamla efter)."),
            ("Client id: tokens issued to another app's client id do not work with FORTNOX_CLIENT_ID; use that "
             "app's settings or connect the tenant again.",
             "Klient-id: tokens som utfärdats för en annan apps klient-id fungerar inte med FORTNOX_CLIENT_ID; "
             "använd den appens inställningar eller anslut kunden på nytt."),
            ("Re-run the diagnosis after the restart.",
             "Kör diagnosen igen efter omstarten."),
        ),
    ),
    CauseEntry(
        cause=Cause.TENANT_UNKNOWN,
        title="Tenant not registered",
        title_sv="Kunden är inte registrerad",
        summary="The tenant {tenant_id} is not registered with the bot, so it cannot be checked.",
        summary_sv="Kunden {tenant_id} är inte registrerad i boten och kan därför inte kontrolleras.",
        who_fixes="our support operator",
        operator=(
            ('Register the tenant: `fortnox-bot tenant add {tenant_id} --name "…" --kinds invoice,customer` '
             '(with its real name and export kinds).',
             'Registrera kunden: `fortnox-bot tenant add {tenant_id} --name "…" --kinds invoice,customer` '
             '(med rätt namn och exporttyper).'),
            ("If you have its tokens, store them with `fortnox-bot tenant credentials {tenant_id}` "
             "(JSON on standard input).",
             "Har du kundens tokens, spara dem med `fortnox-bot tenant credentials {tenant_id}` "
             "(JSON via standard input)."),
            ("Otherwise print a connect link with `fortnox-bot connect {tenant_id}` and send it to the customer's "
             "Fortnox system administrator.",
             "Annars skriver du ut en anslutningslänk med `fortnox-bot connect {tenant_id}` och skickar den till "
             "kundens systemadministratör i Fortnox."),
        ),
    ),
)

CATALOGUE: Mapping[Cause, CauseEntry] = MappingProxyType({e.cause: e for e in _ENTRIES})


# What a missing (absent, None or empty) param renders as, per language.
_FALLBACK: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "en": MappingProxyType({
        "tenant": "this customer",
        "tenant_id": "TENANT",
        "missing_scopes": "the missing scopes",
        "unrequestable_scopes": "the scopes named in the failing checks",
        "resource": "the exported data",
        "message": "(no message)",
        "code": "unknown",
        "status": "error or timeout",
        "retry_after": "a moment",
        "reason": "see the failing checks",
        "setting": "in question",
        "affected": "every tenant",
    }),
    "sv": MappingProxyType({
        "tenant": "den här kunden",
        "tenant_id": "TENANT",
        "missing_scopes": "de behörigheter som saknas",
        "unrequestable_scopes": "de scopes som nämns i kontrollerna",
        "resource": "det som exporteras",
        "message": "(inget meddelande)",
        "code": "okänd",
        "status": "fel eller timeout",
        "retry_after": "en stund",
        "reason": "se kontrollerna som misslyckades",
        "setting": "i fråga",
        "affected": "alla kunder",
    }),
})


# ---- formatting only below ----

class _Params(dict):
    """format_map mapping: a missing key renders as the language's fallback word, never a KeyError."""

    def __init__(self, params: Mapping[str, object], lang: str) -> None:
        super().__init__({k: str(v) for k, v in params.items() if v is not None and str(v).strip()})
        self._fallback = _FALLBACK[lang]

    def __missing__(self, key: str) -> str:
        return self._fallback.get(key, "")


def _lang(lang: str | None) -> str:
    return "sv" if (lang or "").strip().lower()[:2] == "sv" else "en"


def _fill(template: str, lang: str, params: Mapping[str, object]) -> str:
    return template.format_map(_Params(params, lang))


def entry(cause: Cause) -> CauseEntry:
    return CATALOGUE[Cause(cause)]


def summary_for(cause: Cause, lang: str = "en", **params) -> str:
    e = entry(cause)
    lang = _lang(lang)
    return _fill(e.summary_sv if lang == "sv" else e.summary, lang, params)


def steps_for(cause: Cause, **params) -> tuple[Step, ...]:
    """Operator steps first, then the customer's Fortnox system administrator's steps."""
    e = entry(cause)
    return tuple(
        Step(audience, _fill(en, "en", params), _fill(sv, "sv", params))
        for audience, pairs in ((Audience.OPERATOR, e.operator), (Audience.CUSTOMER_ADMIN, e.customer_admin))
        for en, sv in pairs
    )


__all__ = ["CauseEntry", "CATALOGUE", "entry", "summary_for", "steps_for"]
