"""The HTML pages a customer's Fortnox admin sees after consenting: Swedish first, English below.

Plain, accessible and self-contained: `<html lang="sv">`, one `<h1>`, an English `<section lang="en">`,
inline CSS only (no scripts, fonts or images), readable at 320 px. Every value is escaped.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Page:
    tone: str                      # ok | warn | bad: the accent colour only; the words carry the meaning
    title_sv: str
    title_en: str
    body_sv: tuple[str, ...]       # paragraphs; {company}, {problem_sv}/{problem_en} are filled in
    body_en: tuple[str, ...]


_NEW_LINK_SV = "Be din kontaktperson hos integrationen om en ny länk."
_NEW_LINK_EN = "Ask your contact at the integration for a new link."

PAGES: dict[str, Page] = {
    "success": Page(
        "ok", "Klart! Integrationen är aktiverad", "Done! The integration is activated",
        ("Tack! Kopplingen mellan {company} och Fortnox fungerar igen. Vi har kontrollerat anslutningen och kör "
         "de misslyckade exporterna igen.", "Du kan stänga den här sidan."),
        ("Thank you! The connection between {company} and Fortnox works again. We have checked it and are "
         "re-running the failed exports.", "You can close this page."),
    ),
    "verify_failed": Page(
        "warn", "Aktiveringen är mottagen, men något saknas", "Activation received, but something is missing",
        ("Tack! Aktiveringen för {company} är sparad, men vår kontroll hittade ett annat problem: {problem_sv}.",
         "Din kontaktperson hos integrationen hör av sig om vad som behöver göras."),
        ("Thank you! The activation for {company} is saved, but our check found another problem: {problem_en}.",
         "Your contact at the integration will tell you what needs to be done."),
    ),
    "cancelled": Page(
        "warn", "Aktiveringen avbröts", "Activation cancelled",
        ("Integrationen godkändes inte för {company}, så ingenting har ändrats.",
         "Vill du aktivera den senare? " + _NEW_LINK_SV),
        ("The integration was not approved for {company}, so nothing has changed.",
         "Want to activate it later? " + _NEW_LINK_EN),
    ),
    "invalid": Page(
        "bad", "Länken är ogiltig", "This link is not valid",
        ("Den här aktiveringslänken känns inte igen eller hör till ett annat företag. Ingenting har ändrats.",
         _NEW_LINK_SV),
        ("This activation link is not recognised or belongs to another company. Nothing has changed.",
         _NEW_LINK_EN),
    ),
    "expired": Page(
        "bad", "Länken gäller inte längre", "This link is no longer valid",
        ("Aktiveringslänkar gäller en begränsad tid och kan dras tillbaka. Den här har gått ut, så ingenting har "
         "ändrats.", _NEW_LINK_SV),
        ("Activation links are valid for a limited time and can be withdrawn. This one has expired, so nothing "
         "has changed.", _NEW_LINK_EN),
    ),
    "used": Page(
        "bad", "Länken är redan använd", "This link has already been used",
        ("Varje aktiveringslänk fungerar bara en gång. Har du redan godkänt integrationen behöver du inte göra "
         "något mer.", "Annars: " + _NEW_LINK_SV.lower()),
        ("Each activation link works only once. If you have already approved the integration, there is nothing "
         "more to do.", "Otherwise: " + _NEW_LINK_EN.lower()),
    ),
    "not_completed": Page(
        "bad", "Aktiveringen slutfördes inte", "The activation was not completed",
        ("Fortnox skickade tillbaka dig utan något svar, så länken slutfördes inte och ingenting har ändrats.",
         "Det kan bero på att företagets Fortnox-konto är låst, till exempel på grund av en obetald faktura till "
         "Fortnox. Logga in i Fortnox och kontrollera kontot, och öppna sedan länken du fick igen."),
        ("Fortnox sent you back without an answer, so the link was not completed and nothing has changed.",
         "A locked Fortnox company account can cause this, for example after an unpaid Fortnox invoice. Log in to "
         "Fortnox, check the account, then open the link you received again."),
    ),
    "wrong_company": Page(
        "bad", "Fel företag valdes", "The wrong company was chosen",
        ("Integrationen godkändes för ett annat Fortnox-företag än {company}, så vi har inte sparat något.",
         "Loggar du in som redovisningsbyrå via Digital byrå? Välj då klientföretaget {company}. " + _NEW_LINK_SV),
        ("The integration was approved for another Fortnox company than {company}, so nothing was saved.",
         "Logging in as an accounting bureau through Digital byrå? Then pick the client company {company}. "
         + _NEW_LINK_EN),
    ),
    "exchange_failed": Page(
        "bad", "Aktiveringen kunde inte slutföras", "The activation could not be completed",
        ("Fortnox godtog inte aktiveringen, så ingenting har sparats.", _NEW_LINK_SV),
        ("Fortnox did not accept the activation, so nothing was saved.", _NEW_LINK_EN),
    ),
    "unavailable": Page(
        "bad", "Fortnox svarar inte just nu", "Fortnox is not answering right now",
        ("Aktiveringen kunde inte slutföras eftersom Fortnox inte svarade, så ingenting har sparats.",
         "Vänta en stund. " + _NEW_LINK_SV),
        ("The activation could not be completed because Fortnox did not answer, so nothing was saved.",
         "Please wait a while. " + _NEW_LINK_EN),
    ),
    "error": Page(
        "bad", "Något gick fel hos oss", "Something went wrong on our side",
        ("Aktiveringen kunde inte slutföras. Felet är loggat och din kontaktperson hör av sig.",),
        ("The activation could not be completed. The error is logged and your contact will get in touch.",),
    ),
}

_ACCENT = {"ok": "#1b7f3b", "warn": "#8a5a00", "bad": "#b00020"}
_STYLE = (
    "*{box-sizing:border-box}"
    "body{margin:0;padding:1rem;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
    "font-size:1.0625rem;line-height:1.55;color:#1a1a1a;background:#fff}"
    "main{max-width:36rem;margin:2rem auto;padding:1.25rem;border-top:.4rem solid var(--accent)}"
    "h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}"
    "h2{font-size:1.2rem;line-height:1.3;margin:0 0 .75rem}"
    "p{margin:0 0 .9rem;overflow-wrap:anywhere}"
    "section{margin-top:1.75rem;padding-top:1.25rem;border-top:1px solid #c9c9c9}"
    "@media (max-width:400px){body{padding:.5rem}main{margin:.5rem auto;padding:.75rem}}"
)


def _paragraphs(items: tuple[str, ...], **values: str) -> str:
    return "".join(f"<p>{escape(p.format_map(values))}</p>" for p in items)


def render_page(landing) -> str:
    """HTML for a `bot.fix.completion.Landing` (page key, company name, remaining problem)."""
    page = PAGES.get(landing.page, PAGES["error"])
    sv = _paragraphs(page.body_sv, company=landing.company or "företaget", problem_sv=landing.problem_sv or "okänt")
    en = _paragraphs(page.body_en, company=landing.company or "the company", problem_en=landing.problem_en or "unknown")
    title = f"{page.title_sv} · {page.title_en}"
    return (
        '<!DOCTYPE html>\n<html lang="sv">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>:root{{--accent:{_ACCENT[page.tone]}}}{_STYLE}</style>\n</head>\n"
        f'<body>\n<main id="{escape(landing.page)}">\n<h1>{escape(page.title_sv)}</h1>\n{sv}\n'
        f'<section lang="en" aria-labelledby="en-title">\n<h2 id="en-title">{escape(page.title_en)}</h2>\n{en}\n'
        "</section>\n</main>\n</body>\n</html>\n"
    )
