"""HTML of the sandbox's Fortnox pages: the consent ("Aktivering") page and Fortnox's own error page.

Plain HTML with labelled inputs and no JavaScript, so a person, curl or a test can drive it.
Every value from the request is escaped.
"""
from __future__ import annotations

from html import escape

# Swedish names of the scopes, as the consent page lists them.
SCOPE_LABELS = {
    "archive": "Arkivplats",
    "article": "Artikel",
    "bookkeeping": "Bokföring",
    "companyinformation": "Företagsinformation",
    "connectfile": "Koppla filer",
    "costcenter": "Kostnadsställe",
    "currency": "Valuta",
    "customer": "Kund",
    "inbox": "Inkorg",
    "invoice": "Faktura",
    "noxfinansinvoice": "Nox Finans faktura",
    "offer": "Offert",
    "order": "Order",
    "payment": "Betalningar",
    "price": "Pris",
    "print": "Utskriftsmallar",
    "profile": "Profil",
    "project": "Projekt",
    "salary": "Lön",
    "settings": "Inställningar",
    "supplier": "Leverantör",
    "supplierinvoice": "Leverantörsfaktura",
    "timereporting": "Tidredovisning",
}

# The authorize parameters carried through the form as hidden inputs.
CARRIED = ("client_id", "response_type", "scope", "state", "redirect_uri", "access_type", "account_type")

_STYLE = (
    "body{font-family:sans-serif;max-width:32rem;margin:3rem auto;color:#1a1a1a}"
    "h1{font-size:1.6rem}.error{color:#a40000;border:1px solid #a40000;padding:.5rem}"
    "label{display:block;margin-top:.8rem}input{font-size:1rem;padding:.3rem;width:100%}"
    "button{margin-top:1rem;margin-right:.5rem;font-size:1rem;padding:.4rem 1rem}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="sv"><head><meta charset="utf-8">'
        f"<title>{escape(title)} – Fortnox</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def consent_page(action: str, params: dict, scopes: tuple[str, ...], service: bool, error: str | None = None,
                 tenant_id: str = "", user_id: str = "") -> str:
    """The "Aktivering" page: what the integration asks for, a login form and the two buttons."""
    items = "".join(
        f"<li>{escape(SCOPE_LABELS.get(s, s))} <code>{escape(s)}</code></li>" for s in scopes
    )
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(params.get(name) or "")}">' for name in CARRIED
    )
    kind = "ett tjänstekonto (kräver systemadministratör)" if service else "din användare"
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        "<h1>Aktivering</h1>"
        f"<p>Integrationen <strong>{escape(params.get('client_id') or '')}</strong> vill koppla sig till "
        f"ditt Fortnox-företag via {kind} och få behörighet till:</p>"
        f'<ul id="scopes">{items}</ul>'
        f"{err}"
        f'<form method="post" action="{escape(action)}">{hidden}'
        '<label for="tenant_id">Företag (databasnummer)</label>'
        f'<input id="tenant_id" name="tenant_id" inputmode="numeric" value="{escape(tenant_id)}">'
        '<label for="user_id">Användar-ID</label>'
        f'<input id="user_id" name="user_id" inputmode="numeric" value="{escape(user_id)}">'
        # a bare "& " is valid HTML5 and keeps the button text greppable as Fortnox writes it
        '<button type="submit" name="action" value="approve">Godkänn & aktivera</button>'
        '<button type="submit" name="action" value="cancel">Avbryt</button>'
        "</form>"
    )
    return _page("Aktivering", body)


def error_page(message: str) -> str:
    """Fortnox's own error page, shown instead of redirecting back to the integration."""
    body = (
        "<h1>Något gick fel</h1>"
        f'<p class="error" role="alert" id="error">{escape(message)}</p>'
        "<p>Kontakta leverantören av integrationen.</p>"
    )
    return _page("Fel", body)
