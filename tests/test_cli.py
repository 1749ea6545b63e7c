"""`fortnox-bot` tenant, credentials, connect, db and `diagnose --all`: real commands on a real store."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update

from bot.fortnox.claims import decode_claims
from storage import Store
from storage.models import Connection, Tenant
from storage.types import utcnow
from tests.support.diag import call_main, cli_env, run_cli
from tests.support.seed import CLIENT_ID, seed_tenant

COMPANY = 1234567


@pytest.fixture
def store(sqlite_store):
    """These tests run on SQLite only (the CLI in a subprocess reads the same file)."""
    return sqlite_store


@pytest.fixture
def cli(sandbox, sqlite_url, store, monkeypatch, capsys):
    """Run `fortnox-bot ARGS…` in this process against the test store and sandbox."""
    def run(*args, stdin=None, **env):
        return call_main(monkeypatch, capsys, *args, env=cli_env(sandbox, sqlite_url, **env), stdin=stdin)
    return run


def _ok(run) -> None:
    assert run.code == 0, run.err
    assert "Traceback" not in run.out + run.err


def _usage(run, says: str) -> None:
    assert run.code == 2, (run.out, run.err)
    assert says in run.err, run.err
    assert "Traceback" not in run.out + run.err and len(run.err.strip().splitlines()) == 1


def _listed(cli) -> dict:
    run = cli("tenant", "list", "--json")
    _ok(run)
    return {t["tenant"]: t for t in json.loads(run.out)}


# --- tenant add | set | list ---------------------------------------------------------------------------

def test_tenant_add_set_and_list(cli, store):
    _ok(cli("tenant", "add", "acme", "--name", "Acme AB", "--channel", "C0ACME", "--kinds", "invoice,customer"))
    _ok(cli("tenant", "add", "beta", "--kinds", "voucher supplierinvoice", "--service-account"))
    _usage(cli("tenant", "add", "acme"), "tenant 'acme' already exists")

    tenants = _listed(cli)
    assert tenants["acme"] == {"tenant": "acme", "name": "Acme AB", "channel": "C0ACME",
                               "kinds": ["invoice", "customer"], "connection": "none",
                               "service_account": False, "company_id": None}
    assert tenants["beta"]["name"] == "beta" and tenants["beta"]["channel"] is None
    assert tenants["beta"]["kinds"] == ["voucher", "supplierinvoice"] and tenants["beta"]["service_account"] is True

    _ok(cli("tenant", "set", "acme", "--name", "Acme Sverige AB", "--kinds", "invoice", "--company-id", "1234567"))
    _ok(cli("tenant", "set", "beta", "--no-service-account", "--channel", "C0BETA"))
    tenants = _listed(cli)
    assert (tenants["acme"]["name"], tenants["acme"]["kinds"], tenants["acme"]["company_id"]) == \
        ("Acme Sverige AB", ["invoice"], "1234567")
    assert (tenants["beta"]["service_account"], tenants["beta"]["channel"]) == (False, "C0BETA")

    text = cli("tenant", "list")
    _ok(text)
    assert text.out.splitlines()[0].split() == ["TENANT", "NAME", "CHANNEL", "CONNECTION", "KINDS"]
    assert "Acme Sverige AB" in text.out and "C0BETA" in text.out


@pytest.mark.parametrize("args,says", [
    (("tenant", "add", "acme", "--kinds", "invoice,invoices"), "unknown export kind(s): invoices"),
    (("tenant", "add", "acme", "--channel", "#general"), "'#general' is not a Slack channel ID"),
    (("tenant", "add", "bad id!"), "tenant id 'bad id!' is not valid"),
    (("tenant", "set", "ghost", "--name", "X"), "tenant 'ghost' is not registered"),
    (("tenant", "set", "acme"), "nothing to change"),
])
def test_tenant_bad_input_exits_2_and_changes_nothing(args, says, cli, store):
    if args[1] == "set" and args[2] == "acme":
        _ok(cli("tenant", "add", "acme"))
    _usage(cli(*args), says)
    assert [t.id for t in store.tenants.list()] == (["acme"] if args[2] == "acme" and args[1] == "set" else [])


def test_tenant_list_names_each_connection_kind(cli, store, world):
    seed_tenant(store, world, "oauth-co", company=1001, grant=True)
    seed_tenant(store, world, "legacy-co", company=1002, grant=False)
    store.connections.store_legacy("legacy-co", world.legacy_token(1002))
    seed_tenant(store, world, "service-co", company=1003, grant=False, service_account=True)
    seed_tenant(store, world, "none-co", company=1004, grant=False)
    service = world.issue_grant(1003, 7, {"companyinformation", "invoice", "customer"}, service=True)
    _ok(cli("tenant", "credentials", "service-co", stdin=json.dumps({"access_token": service["access_token"]})))

    assert {t: v["connection"] for t, v in _listed(cli).items()} == {
        "oauth-co": "oauth", "legacy-co": "legacy", "service-co": "service", "none-co": "none"}


# --- tenant import -------------------------------------------------------------------------------------

CSV = "tenant,name,channel,kinds\nacme,Acme AB,C0ACME,invoice customer\nbeta,Beta AB,,voucher\n"
JSON_LIST = [{"tenant": "acme", "name": "Acme AB", "channel": "C0ACME", "kinds": ["invoice", "customer"]},
             {"tenant": "beta", "name": "Beta AB", "channel": None, "kinds": ["voucher"]}]


@pytest.mark.parametrize("filename,content", [("tenants.csv", CSV), ("tenants.json", json.dumps(JSON_LIST))])
def test_tenant_import_csv_and_json(filename, content, cli, tmp_path):
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    run = cli("tenant", "import", str(path))
    _ok(run)
    assert "2 added, 0 updated" in run.out
    tenants = _listed(cli)
    assert tenants["acme"]["kinds"] == ["invoice", "customer"] and tenants["acme"]["channel"] == "C0ACME"
    assert tenants["beta"]["kinds"] == ["voucher"] and tenants["beta"]["channel"] is None

    path.write_text(content.replace("Acme AB", "Acme Sverige AB"), encoding="utf-8")
    run = cli("tenant", "import", str(path))
    _ok(run)
    assert "0 added, 2 updated" in run.out and _listed(cli)["acme"]["name"] == "Acme Sverige AB"


@pytest.mark.parametrize("filename,content,says", [
    ("t.csv", "tenant,name,channel,kinds\nacme,Acme,,invoice\nbeta,Beta,,invoices\n",
     "line 3 (tenant 'beta'): unknown export kind(s): invoices"),
    ("t.csv", "tenant,name,channel,kinds\nacme,Acme,general,invoice\n",
     "line 2 (tenant 'acme'): channel 'general' is not a Slack channel ID"),
    ("t.csv", "tenant,name,channel,kinds\nacme,Acme,,invoice\nacme,Again,,invoice\n",
     "line 3 (tenant 'acme'): tenant 'acme' appears twice"),
    ("t.csv", "tenant,name,channel,kind\nacme,Acme,,invoice\n", "unknown: 'kind'"),
    ("t.csv", "tenant,name,channel,kinds\nacme,Acme,,invoice,customer\n", "line 2: more cells than columns"),
    ("t.json", json.dumps([{"tenant": "acme", "kinds": ["invoice"]}, {"tenant": "b c"}]),
     "item 2 (tenant 'b c'): tenant id 'b c' is not valid"),
    ("t.json", json.dumps([{"tenant": "acme", "kinds": "invoice", "channnel": "C1"}]),
     "item 1 (tenant 'acme'): unknown key(s) 'channnel'"),
    ("t.json", json.dumps({"tenant": "acme"}), "JSON must be a list of objects"),
    ("t.json", "[{", "not valid JSON"),
    ("t.json", json.dumps([{"tenant": 42}]), "item 1: tenant must be a string"),
    ("t.csv", "", "the file is empty"),
    ("t.csv", 'tenant,name,channel,kinds\nc1,"Unclosed,C0123ABCD,invoice\n', "not valid CSV"),
])
def test_tenant_import_bad_rows_import_nothing(filename, content, says, cli, store, tmp_path):
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    run = cli("tenant", "import", str(path))
    _usage(run, says)
    assert "nothing was imported" in run.err
    assert store.tenants.list() == []


def test_tenant_import_missing_file(cli, tmp_path):
    _usage(cli("tenant", "import", str(tmp_path / "nope.csv")), "cannot read")


# --- tenant credentials ----------------------------------------------------------------------------------

def _fresh_tokens(world, company=COMPANY, scopes=("companyinformation", "invoice", "customer", "profile")) -> dict:
    if world.company(company) is None:
        world.add_company(company, "Acme AB")
        world.add_user(company, 7, "Anna")
    return world.issue_grant(company, 7, set(scopes))


@pytest.mark.parametrize("expires", ["absent", "iso", "epoch", "epoch_string"])
def test_tenant_credentials_from_stdin(expires, cli, store, world):
    _ok(cli("tenant", "add", "acme", "--kinds", "invoice,customer", "--company-id", str(COMPANY)))
    tokens = _fresh_tokens(world)
    jwt_exp = decode_claims(tokens["access_token"]).exp
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    payload = {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"]}
    payload["expires_at"] = {"absent": None, "iso": "2030-01-02T04:04:05+01:00", "epoch": when.timestamp(),
                             "epoch_string": str(int(when.timestamp()))}[expires]
    if payload["expires_at"] is None:
        del payload["expires_at"]

    run = cli("tenant", "credentials", "acme", stdin=json.dumps(payload))

    _ok(run)
    assert tokens["access_token"] not in run.out + run.err and tokens["refresh_token"] not in run.out + run.err
    cred = store.connections.load("acme")
    assert (cred.access_token, cred.refresh_token) == (tokens["access_token"], tokens["refresh_token"])
    assert cred.mode == "oauth"
    assert cred.expires_at == (jwt_exp if expires == "absent" else when)
    assert cred.company_id == str(COMPANY) and "invoice" in cred.scopes
    assert [e.action for e in store.audit.for_tenant("acme")][-1] == "credentials_stored"
    diagnosis = cli("diagnose", "acme", "--json")
    _ok(diagnosis)
    assert json.loads(diagnosis.out)["cause"] == "healthy"


def test_tenant_credentials_legacy(cli, store, world):
    _ok(cli("tenant", "add", "acme", "--kinds", "invoice"))
    legacy = world.legacy_token(COMPANY)
    _ok(cli("tenant", "credentials", "acme", stdin=json.dumps({"legacy_access_token": legacy})))
    cred = store.connections.load("acme")
    assert (cred.mode, cred.legacy_token, cred.access_token) == ("legacy", legacy, None)
    assert json.loads(cli("diagnose", "acme", "--json").out)["cause"] == "legacy_auth"


@pytest.mark.parametrize("stdin,says", [
    ("{not json", "standard input is not JSON"),
    ("", "nothing on standard input"),
    ('["a"]', "expected a JSON object"),
    ('{"access_token": ""}', "access_token must be a non-empty string"),
    ('{"access_token": "opaque", "refresh_token": "r"}',
     "expires_at is required when the access token is not a Fortnox JWT"),
    ('{"access_token": "opaque", "expires_at": "2030-01-01T00:00:00"}', "expires_at needs a UTC offset"),
    ('{"access_token": "opaque", "expires_at": "soon"}', "expires_at 'soon' is not ISO 8601"),
    ('{"access_token": "opaque", "expires_at": true}', "expires_at must be ISO 8601"),
    ('{"access_token": "opaque", "refresh_token": 5, "expires_at": 1}', "refresh_token must be a non-empty string"),
    ('{"accessToken": "x"}', "unexpected key(s) 'accessToken'"),
    ('{"legacy_access_token": "x", "access_token": "y"}', "unexpected key(s) 'access_token'"),
    ('{"legacy_access_token": " "}', "legacy_access_token must be a non-empty string"),
])
def test_tenant_credentials_bad_input_stores_nothing(stdin, says, cli, store):
    _ok(cli("tenant", "add", "acme", "--kinds", "invoice"))
    _usage(cli("tenant", "credentials", "acme", stdin=stdin), says)
    assert store.connections.load("acme") is None


def test_tenant_credentials_refuses_another_company_and_unknown_tenant(cli, store, world):
    _ok(cli("tenant", "add", "acme", "--kinds", "invoice", "--company-id", "999"))
    tokens = _fresh_tokens(world)
    _usage(cli("tenant", "credentials", "acme", stdin=json.dumps({"access_token": tokens["access_token"]})),
           f"belongs to Fortnox company {COMPANY}, but tenant acme is company 999")
    _usage(cli("tenant", "credentials", "ghost", stdin=json.dumps({"access_token": tokens["access_token"]})),
           "tenant 'ghost' is not registered")
    assert store.connections.load("acme") is None and store.connections.load("ghost") is None


# --- connect ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("service", [False, True])
def test_connect_prints_a_consent_link_fortnox_accepts(service, cli, store, sandbox, world):
    args = ["tenant", "add", "acme", "--kinds", "invoice,customer"] + (["--service-account"] if service else [])
    _ok(cli(*args))

    run = cli("connect", "acme")

    _ok(run)
    url = run.out.strip()
    assert len(run.out.strip().splitlines()) == 1 and "valid for 72 h" in run.err
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{sandbox.auth_url}/auth"
    assert "scope=companyinformation%20customer%20invoice&" in parts.query and "+" not in parts.query
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    expected = {"client_id": CLIENT_ID, "response_type": "code", "scope": "companyinformation customer invoice",
                "redirect_uri": "http://127.0.0.1:9/oauth/fortnox/callback", "access_type": "offline"}
    if service:
        expected["account_type"] = "service"
    assert {k: v for k, v in query.items() if k != "state"} == expected
    state = store.consents.peek(query["state"])
    assert state.tenant_id == "acme" and state.service_account is service and state.created_by == "cli"
    assert httpx.get(url).status_code == 200       # the sandbox's Fortnox shows its consent page for it
    assert [e.action for e in store.audit.for_tenant("acme")] == ["link_issued"]


def test_connect_warns_when_a_needed_scope_cannot_be_requested(cli):
    _ok(cli("tenant", "add", "acme", "--kinds", "invoice,salary"))
    run = cli("connect", "acme", FORTNOX_SCOPES="companyinformation invoice")
    _ok(run)
    assert "scope=companyinformation%20invoice&" in run.out
    assert "also need salary, which FORTNOX_SCOPES does not list" in run.err


@pytest.mark.parametrize("missing", ["FORTNOX_CLIENT_ID", "FORTNOX_REDIRECT_URI", "ENCRYPTION_KEY"])
def test_connect_without_a_setting_names_it(missing, cli, store):
    store.tenants.add(Tenant(id="acme", name="Acme", kinds=["invoice"]))
    _usage(cli("connect", "acme", **{missing: ""}), f"fortnox-bot: setting {missing}: is required but not set")


def test_connect_unknown_tenant(cli):
    _usage(cli("connect", "ghost"), "tenant 'ghost' is not registered")


# --- db upgrade, settings -----------------------------------------------------------------------------------

def test_db_upgrade_creates_the_schema(tmp_path, sandbox):
    url = f"sqlite:///{tmp_path}/new.db"
    run = run_cli("db", "upgrade", env=cli_env(sandbox, url))
    assert run.code == 0, run.err
    assert run.out.strip() == f"database {url} is at revision 0001"
    assert Store(url).tenants.count() == 0


@pytest.mark.parametrize("args", [("tenant", "list"), ("diagnose", "acme"), ("tenant", "add", "acme")])
def test_missing_encryption_key_is_one_line_exit_2(args, cli):
    _usage(cli(*args, ENCRYPTION_KEY=""), "fortnox-bot: setting ENCRYPTION_KEY: is required but not set")


def test_malformed_setting_is_one_line_exit_2(cli):
    _usage(cli("diagnose", "acme", FORTNOX_API_URL="api.fortnox.se/3"),
           "setting FORTNOX_API_URL: expected an http(s) URL")


# --- diagnose --all and the terminal output -----------------------------------------------------------------

def _three_tenants(store, world, *, expired=False):
    for i, tenant in enumerate(("acme", "beta", "gamma")):
        seed_tenant(store, world, tenant, company=1000 + i, name=f"{tenant.title()} AB")
    if expired:
        with store.db.engine.begin() as conn:
            conn.execute(update(Connection).values(expires_at=utcnow() - timedelta(minutes=1)))


def test_diagnose_all_json_is_one_object_a_line(cli, store, world):
    _three_tenants(store, world)
    world.remove_integration(1001)
    run = cli("diagnose", "--all", "--json")
    _ok(run)
    objects = {o["tenant"]: o for o in map(json.loads, run.out.splitlines())}
    assert {t: o["cause"] for t, o in objects.items()} == {
        "acme": "healthy", "beta": "reactivation_required", "gamma": "healthy"}
    assert all(set(o) >= {"tenant", "cause", "summary", "checks", "steps"} for o in objects.values())
    assert "3 tenants in" in run.err and "2 healthy, 1 reactivation_required" in run.err
    assert "Every tenant fails the same way" not in run.err


def test_diagnose_all_summary_table_and_cross_tenant_hint(cli, store, world):
    _three_tenants(store, world, expired=True)
    run = cli("diagnose", "--all", FORTNOX_CLIENT_SECRET="rotated-in-the-portal")
    _ok(run)
    lines = run.out.splitlines()
    assert lines[0].split() == ["TENANT", "CAUSE", "EVIDENCE"]
    assert [line.split()[:3] for line in lines[1:4]] == [
        ["acme", "client_credentials_invalid", "client_credentials:"],
        ["beta", "client_credentials_invalid", "client_credentials:"],
        ["gamma", "client_credentials_invalid", "client_credentials:"]]
    assert "client_credentials: Fortnox rejects the integration's client id" in lines[1]   # cut to the terminal
    assert "3 tenants in" in run.out and "3 client_credentials_invalid" in run.out
    assert ("Every tenant fails the same way (client_credentials_invalid): the cause is the integration's own "
            "setup or Fortnox itself, not each customer.") in run.out
    assert len([c for c in world.token_calls if c["status"] == 401]) == 3


def test_diagnose_all_with_no_tenants(cli):
    run = cli("diagnose", "--all")
    _ok(run)
    assert run.out == "" and "no tenants registered" in run.err


def test_diagnose_text_reads_as_a_report(cli, store, world):
    seed_tenant(store, world, kinds=("invoice",), licences={"bokforing"})
    run = cli("diagnose", "acme")
    _ok(run)
    out = run.out
    assert out.startswith("acme: license_missing (Fortnox licence missing)\n")
    assert "lacks the licence or module for invoices" in out
    assert "Checks (1 failing):" in out
    assert "  ✔ probe " in out and "  ✘ scope:invoice " in out and "code 2001101" in out
    assert "Who fixes it: customer's Fortnox admin (buy or assign the licence)" in out
    operator = out.index("What the operator does:")
    customer = out.index("What the customer's Fortnox system administrator does:")
    assert operator < customer
    assert "\n  1. Tell the Fortnox system administrator at Acme AB" in out[operator:customer]
    assert "\n  2. Buy the licence or module for invoices" in out[customer:]
    assert run.err == ""


def test_tenant_credentials_takes_the_token_endpoints_answer_as_it_is(cli, store, world):
    """The sandbox (and Fortnox) answer with expires_in, scope and token_type too: piping that in works."""
    _ok(cli("tenant", "add", "acme", "--kinds", "invoice,customer", "--company-id", str(COMPANY)))
    tokens = _fresh_tokens(world)
    answer = {**{k: tokens[k] for k in ("access_token", "refresh_token")}, "expires_in": 3600,
              "scope": "companyinformation invoice customer profile", "token_type": "bearer"}
    _ok(cli("tenant", "credentials", "acme", stdin=json.dumps(answer)))
    assert store.connections.load("acme").refresh_token == tokens["refresh_token"]
