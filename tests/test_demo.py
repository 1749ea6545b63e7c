"""`fortnox-bot demo` (the README's first command) runs the whole loop and exits 0."""
from __future__ import annotations

from bot.demo import main


def test_demo_runs_the_whole_loop(capsys):
    assert main() == 0
    out = capsys.readouterr().out
    # Each demo tenant ends with the cause its real failure has.
    for tenant, cause in (("acme", "reactivation_required"), ("bygg", "license_missing"), ("cafe", "scopes_missing"),
                          ("dala", "token_refreshed"), ("ekon", "user_permissions"), ("fisk", "legacy_auth"),
                          ("ghost", "tenant_unknown")):
        assert f"── {tenant}: {cause}" in out, out
    assert "'duplicate': True" in out
    assert "Diagnosing Café Söder…" in out
    assert "resolved by bot (verified consent)" in out
    assert "Done: 7 tenants, 6 alerts" in out
