"""Words of the fix loop that people read: the message for the customer's Fortnox admin, and why consent cannot help.

Plain text (renderers escape it). Swedish first, as Fortnox's own pages are Swedish; the UI words are
Fortnox's ("Aktivering", "Godkänn & aktivera", "Systemadministratör", "Digital byrå"), reference §2, §11.
"""
from __future__ import annotations

from datetime import datetime

from bot.diagnosis import catalogue
from bot.diagnosis.model import Cause


def when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "?"


def customer_message(*, company: str, link: str, expires_at: datetime, service_account: bool) -> str:
    """Ready to paste into an e-mail to the customer's Fortnox system administrator."""
    service_sv = (" Det skapar ett tjänstekonto för integrationen, och bara en systemadministratör kan godkänna det."
                  if service_account else "")
    service_en = (" This creates a service account for the integration, which only a system administrator can approve."
                  if service_account else "")
    return (
        f"Hej! Vi behöver att du aktiverar vår integration med Fortnox för {company} igen.\n"
        f"1. Öppna länken: {link}\n"
        f"2. Logga in i Fortnox som systemadministratör (Systemadministratör) för {company}. Du måste vara "
        f"systemadministratör.{service_sv} Loggar du in som redovisningsbyrå via Digital byrå: välj klientföretaget "
        f"{company}.\n"
        "3. Kontrollera behörigheterna under \"Aktivering\" och klicka på \"Godkänn & aktivera\".\n"
        "Sedan är du klar: vi kontrollerar anslutningen och kör de misslyckade exporterna igen. "
        f"Länken fungerar en gång och gäller till {when(expires_at)}.\n"
        "\n"
        f"Hi! We need you to activate our Fortnox integration for {company} again.\n"
        f"1. Open the link: {link}\n"
        f"2. Log in to Fortnox as a system administrator (Systemadministratör) of {company}. You must be a system "
        f"administrator.{service_en} Accounting bureau users (Digital byrå): pick the client company {company}.\n"
        "3. Under \"Aktivering\", check the permissions and click \"Godkänn & aktivera\".\n"
        "That's all: we then verify the connection and re-run the failed exports. "
        f"The link works once and is valid until {when(expires_at)}."
    )


def why_consent_cannot_help(cause: str, tenant: str) -> str:
    """An operator asked for a link, but the diagnosis names a cause a new consent does not fix."""
    if cause == "pending":
        return f"The diagnosis of {tenant} is still running; try again in a moment."
    try:
        c = Cause(cause)
    except ValueError:
        return f"{tenant} has no diagnosis a new consent could fix ({cause})."
    if c in (Cause.HEALTHY, Cause.TOKEN_REFRESHED):
        return f"{tenant}'s Fortnox connection works now ({c}): no reactivation is needed."
    entry = catalogue.entry(c)
    return (f"A new consent cannot fix {tenant}'s problem: “{entry.title}” ({c}). "
            f"It is fixed by {entry.who_fixes}, so no reactivation link was requested. See the alert's steps.")
