"""The consent landing pages as a real browser shows them (headless Chromium): title, heading, text, 320 px."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from html import unescape

import pytest

from tests.support.consent import approve_directly, consent_in_fortnox, failing_incident

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture(autouse=True)
def chromium():
    if not os.path.exists(CHROMIUM):
        reason = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the browser tests")
        pytest.skip(reason)


@pytest.fixture
def db_url(sqlite_url):
    return sqlite_url   # the pages do not depend on the database: one lane is enough


def browse(tmp_path, url: str, *extra: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def visible(dom: str) -> tuple[str, str, str, str]:
    """(title, h1, body text with tags and styles removed, lang of <html>)."""
    title = unescape(re.search(r"<title>(.*?)</title>", dom, re.S).group(1))
    h1 = unescape(re.search(r"<h1>(.*?)</h1>", dom, re.S).group(1))
    body = re.search(r"<body>(.*)</body>", dom, re.S).group(1)
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())
    lang = re.search(r'<html lang="([^"]+)"', dom).group(1)
    return title, h1, text, lang


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_landing_pages_in_chromium(server, store, world, slack, sandbox, tmp_path):
    incident_id = failing_incident(server, store, world)

    # The customer cancels in Fortnox; the browser follows the redirect to the bot.
    decision = approve_directly(server, incident_id)
    redirect = consent_in_fortnox(decision.link, company=555, user=7, action="cancel")
    dom = browse(tmp_path, redirect.headers["location"], "--dump-dom")
    title, h1, text, lang = visible(dom)
    assert (title, h1, lang) == ("Aktiveringen avbröts · Activation cancelled", "Aktiveringen avbröts", "sv")
    assert "Integrationen godkändes inte för Acme AB, så ingenting har ändrats." in text
    assert "Activation cancelled The integration was not approved for Acme AB, so nothing has changed." in text
    assert '<section lang="en"' in dom

    # A new link, approved this time.
    server.drain()
    decision = approve_directly(server, incident_id)
    dom = browse(tmp_path, consent_in_fortnox(decision.link, company=555, user=7).headers["location"], "--dump-dom")
    title, h1, text, _ = visible(dom)
    assert title == "Klart! Integrationen är aktiverad · Done! The integration is activated"
    assert h1 == "Klart! Integrationen är aktiverad"
    assert "Tack! Kopplingen mellan Acme AB och Fortnox fungerar igen." in text
    assert ("Done! The integration is activated Thank you! The connection between Acme AB and Fortnox works again."
            in text)
    assert store.incidents.get(incident_id).status == "resolved"

    # A forged link.
    dom = browse(tmp_path, f"{server.url}/oauth/fortnox/callback?code=abc&state=forged", "--dump-dom")
    title, h1, text, _ = visible(dom)
    assert (title, h1) == ("Länken är ogiltig · This link is not valid", "Länken är ogiltig")
    assert "Ingenting har ändrats." in text and "Nothing has changed." in text and "Acme" not in text

    # Readable on a 320 px phone, even with a long company name.
    saved = tmp_path / "success.html"
    saved.write_text(_success_html(), encoding="utf-8")
    shot = tmp_path / "success-320.png"
    browse(tmp_path, saved.as_uri(), f"--screenshot={shot}", "--window-size=320,720", "--hide-scrollbars")
    assert shot.exists() and png_size(shot) == (320, 720)


def _success_html() -> str:
    from bot.fix.completion import Landing
    from bot.web.pages import render_page

    return render_page(Landing("success", 200, company="Aktiebolaget Med Ett Mycket Långt Företagsnamn i Norden AB"))

