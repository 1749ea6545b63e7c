"""HTTP face of the sandbox: Fortnox's OAuth pages and token endpoint, the /3 REST API, and a JSON
control API under /_sandbox for other processes. State and rules live in `world.py`; this module
only parses requests, applies outages/latency/rate limits and shapes bodies the way Fortnox does.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
from urllib.parse import urlencode, urlsplit, urlunsplit, parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.sandbox.consent_page import CARRIED, consent_page, error_page
from bot.sandbox.world import (
    BASE_SCOPES,
    CompanyLocked,
    ConsentError,
    ConsentRequest,
    LoginError,
    OAuthError,
    World,
    normalise_path,
    token_hash,
)

# API path -> (scope it needs, key of the answer). Paths from reference §6; list answers are empty.
RESOURCES: dict[str, tuple[str, str]] = {
    "/3/companyinformation": ("companyinformation", "CompanyInformation"),
    "/3/settings/company": ("settings", "CompanySettings"),
    "/3/me": ("profile", "MeInformation"),
    "/3/customers": ("customer", "Customers"),
    "/3/invoices": ("invoice", "Invoices"),
    "/3/contracts": ("invoice", "Contracts"),
    "/3/articles": ("article", "Articles"),
    "/3/vouchers": ("bookkeeping", "Vouchers"),
    "/3/accounts": ("bookkeeping", "Accounts"),
    "/3/financialyears": ("bookkeeping", "FinancialYears"),
    "/3/invoicepayments": ("payment", "InvoicePayments"),
    "/3/supplierinvoicepayments": ("payment", "SupplierInvoicePayments"),
    "/3/costcenters": ("costcenter", "CostCenters"),
    "/3/currencies": ("currency", "Currencies"),
    "/3/projects": ("project", "Projects"),
    "/3/supplierinvoices": ("supplierinvoice", "SupplierInvoices"),
    "/3/suppliers": ("supplier", "Suppliers"),
    "/3/orders": ("order", "Orders"),
    "/3/offers": ("offer", "Offers"),
    "/3/prices": ("price", "Prices"),
    "/3/printtemplates": ("print", "PrintTemplates"),
    "/3/employees": ("salary", "Employees"),
    "/3/salarytransactions": ("salary", "SalaryTransactions"),
    "/3/voucherfileconnections": ("connectfile", "VoucherFileConnections"),
    "/3/archive": ("archive", "Folder"),
    "/3/inbox": ("inbox", "Folder"),
}

# code -> (HTTP status, message in "lower" style, message in "pascal" style). "lower" mimics the newer
# English-speaking gateway for 2000310 (CONTRACT's example); the rest is Swedish as Fortnox writes it.
ERRORS: dict[int, tuple[int, str, str]] = {
    2000310: (401, "Invalid login", "Ogiltig inloggning"),
    2000311: (401, "Kan inte logga in, access-token eller client-secret saknas(2).",
              "Kan inte logga in, access-token eller client-secret saknas(2)."),
    2000663: (403, "Har inte behörighet för scope", "Har inte behörighet för scope"),
    2001101: (400, "Det finns ingen aktiv licens för önskat scope", "Det finns ingen aktiv licens för önskat scope"),
    2001339: (403, "Saknar behörighet för att lista fakturor", "Saknar behörighet för att lista fakturor"),
    1000030: (400, "Invalid response type", "Invalid response type"),
    2000423: (404, "Kunde inte hitta efterfrågad resurs", "Kunde inte hitta efterfrågad resurs"),
}

OUTAGE_MODES = {"html503", "empty500", "no_code", "hang"}
_MAINTENANCE = (
    "<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>"
    "<h1>Service Unavailable</h1><p>Fortnox genomför underhåll. Försök igen senare.</p></body></html>"
)
_NO_STORE = {"Cache-Control": "no-store"}


def envelope(style: str, code: int, message: str | None = None) -> dict:
    """Fortnox's ErrorInformation body in the world's key style ("pascal" sends the code as a string)."""
    status, lower, pascal = ERRORS[code]
    if style == "pascal":
        return {"ErrorInformation": {"Error": 1, "Message": message or pascal, "Code": str(code)}}
    return {"ErrorInformation": {"error": 1, "message": message or lower, "code": code}}


def error_response(world: World, code: int) -> JSONResponse:
    return JSONResponse(envelope(world.error_style, code), status_code=ERRORS[code][0])


async def disturbance(world: World, surface: str, tenant_id: int | None) -> Response | None:
    """What an outage answers instead of the real thing, or None when there is no outage here."""
    mode = world.outage_for(surface, tenant_id)
    if mode is None:
        return None
    if mode == "empty500":
        return Response(b"", status_code=500)
    if mode == "no_code":
        key = "Message" if world.error_style == "pascal" else "message"
        return JSONResponse({"ErrorInformation": {key: "Service unavailable"}}, status_code=503)
    if mode == "hang":
        await asyncio.sleep(world.hang_seconds)  # clients should time out long before this ends
        return Response(b"", status_code=504)
    return HTMLResponse(_MAINTENANCE, status_code=503)


def _accept_ok(accept: str | None) -> bool:
    if accept is None or not accept.strip():
        return True
    ranges = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & {"application/json", "application/*", "*/*"})


def _forced_response(status: int, body) -> Response:
    if body is None:
        return Response(b"", status_code=status)
    if isinstance(body, str):
        kind = "text/html; charset=utf-8" if body.lstrip().startswith("<") else "text/plain; charset=utf-8"
        return Response(body, status_code=status, media_type=kind)
    return JSONResponse(body, status_code=status)


# ---- /3 -------------------------------------------------------------------------------------------
def _payload(world: World, tenant_id: int, user_id: int, path: str, key: str) -> dict:
    company = world.company(tenant_id)
    if path == "/3/companyinformation":
        return {key: {
            "Address": "Storgatan 1", "City": "Växjö", "CountryCode": "SE", "DatabaseNumber": tenant_id,
            "CompanyName": company.name, "OrganizationNumber": company.org_number, "VisitAddress": "Storgatan 1",
            "VisitCity": "Växjö", "VisitCountryCode": "SE", "VisitZipCode": "352 30", "ZipCode": "352 30",
        }}
    if path == "/3/settings/company":
        return {key: {
            "Name": company.name, "OrganizationNumber": company.org_number, "DatabaseNumber": tenant_id,
            "Address": "Storgatan 1", "City": "Växjö", "ZipCode": "352 30", "Country": "Sverige",
            "CountryCode": "SE", "Email": "", "Phone1": "", "TaxEnabled": True,
        }}
    if path == "/3/me":
        user = world.user(tenant_id, user_id)
        return {key: {
            "Id": str(user_id), "Name": user.name if user else "", "Email": user.email if user else "",
            "SysAdmin": bool(user and user.sysadmin), "Locale": "sv",
        }}
    return {key: [], "MetaInformation": {"@TotalResources": 0, "@TotalPages": 1, "@CurrentPage": 1}}


def _resource_response(world: World, token, path: str) -> Response:
    """Scope, then licence, then the user's rights, then a forced answer (Fortnox's order)."""
    resource = RESOURCES.get(path)
    if resource is not None:
        scope, key = resource
        if scope not in token.scopes:
            return error_response(world, 2000663)
        if not world.licensed(token.tenant_id, scope):
            return error_response(world, 2001101)
        if scope not in BASE_SCOPES and token.rights is not None and scope not in token.rights:
            return error_response(world, 2001339 if path == "/3/invoices" else 2000663)
    forced = world.forced(token.tenant_id, path)
    if forced is not None:
        return _forced_response(*forced)
    if resource is None:
        return error_response(world, 2000423)
    return JSONResponse(_payload(world, token.tenant_id, token.user_id, path, resource[1]))


async def api(request: Request) -> Response:
    world: World = request.app.state.world
    if world.latency:
        await asyncio.sleep(world.latency)
    path = normalise_path(request.url.path)
    authorization = request.headers.get("authorization")
    legacy = request.headers.get("access-token")
    caller = world.authenticate(authorization, legacy)
    response = await disturbance(world, "api", caller.tenant_id)
    if response is None:
        key = (caller.client_id, caller.tenant_id)
        if key == (None, None):
            key = ("anonymous", authorization or legacy)
        retry = world.rate_check(key)
        if retry is not None:
            response = JSONResponse({"message": "Too many requests"}, status_code=429,
                                    headers={"Retry-After": str(retry)})
        elif not _accept_ok(request.headers.get("accept")):
            response = error_response(world, 1000030)
        elif caller.error is not None:
            response = error_response(world, caller.error)
        else:
            response = _resource_response(world, caller.token, path)
    world.record_api_call(path, response.status_code, caller.tenant_id)
    return response


# ---- /oauth-v1 ------------------------------------------------------------------------------------
def _client_from_basic(header: str | None) -> tuple[str, str] | None:
    """Client id and secret from `Authorization: Basic …`; the only client auth Fortnox accepts (§3)."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _oauth_error(world: World, err: OAuthError) -> JSONResponse:
    # Fortnox also answers a bare {"message"}: the pascal world uses it for refresh-token rejections
    if world.error_style == "pascal" and err.description == "Invalid refresh token":
        return JSONResponse({"message": err.description}, status_code=err.status, headers=_NO_STORE)
    return JSONResponse({"error": err.error, "error_description": err.description}, status_code=err.status,
                        headers=_NO_STORE)


def _authenticated_client(world: World, request: Request) -> str:
    creds = _client_from_basic(request.headers.get("authorization"))
    if creds is None or not world.client_ok(*creds):
        raise OAuthError(401, "invalid_client", "Invalid client credentials")
    return creds[0]


async def token(request: Request) -> Response:
    world: World = request.app.state.world
    form = await request.form()
    grant_type = form.get("grant_type")
    tenant_header = request.headers.get("tenantid")
    tenant_id = world.token_request_tenant(grant_type, form, tenant_header)
    refresh = form.get("refresh_token") if grant_type == "refresh_token" else None
    call = {"grant_type": grant_type, "refresh_token_hash": token_hash(refresh) if refresh else None,
            "tenant_id": tenant_id}
    response = await disturbance(world, "token", tenant_id)
    if response is None:
        try:
            client_id = _authenticated_client(world, request)
            if grant_type == "authorization_code":
                body = world.exchange_code(client_id, form.get("code") or "", form.get("redirect_uri") or None)
            elif grant_type == "refresh_token":
                body = world.refresh(client_id, refresh or "")
            elif grant_type == "client_credentials":
                body = world.client_credentials(client_id, tenant_header)
            elif not grant_type:
                raise OAuthError(400, "invalid_request", "Missing grant_type")
            else:
                raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")
            response = JSONResponse(body, headers=_NO_STORE)
        except OAuthError as err:
            response = _oauth_error(world, err)
            call["error"] = err.error
    call.update(ok=response.status_code == 200, status=response.status_code)
    world.record_token_call(call)
    if world.latency:
        # The grant is done and recorded; only the answer is slow. A caller that dies or times out meanwhile
        # has still spent its refresh token, as with Fortnox when the answer is lost (F-D1).
        await asyncio.sleep(world.latency)
    return response


async def revoke(request: Request) -> Response:
    world: World = request.app.state.world
    if world.latency:
        await asyncio.sleep(world.latency)
    form = await request.form()
    tenant_id = world.token_request_tenant("refresh_token", {"refresh_token": form.get("token")}, None)
    response = await disturbance(world, "token", tenant_id)
    if response is not None:
        return response
    try:
        client_id = _authenticated_client(world, request)
    except OAuthError as err:
        return _oauth_error(world, err)
    # RFC 7009: unknown or dead tokens also answer 200; "revoked" says whether anything changed
    return JSONResponse({"revoked": world.revoke(form.get("token") or "", client_id)})


def _with_query(url: str, params: dict) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _show_consent(request: Request, req: ConsentRequest, params: dict, error: str | None = None,
                  tenant_id: str = "", user_id: str = "") -> HTMLResponse:
    html = consent_page(request.url.path, params, req.scopes, req.service, error, tenant_id, user_id)
    return HTMLResponse(html, headers=_NO_STORE)


async def authorize(request: Request) -> Response:
    """GET shows the consent page; POST is its form (login + approve, or cancel)."""
    world: World = request.app.state.world
    params = dict(request.query_params)
    form = await request.form() if request.method == "POST" else {}
    params.update({k: form[k] for k in CARRIED if k in form})
    try:
        req = world.authorize_request(params)
    except ConsentError as err:
        return HTMLResponse(error_page(str(err)), status_code=400)
    if request.method == "GET":
        return _show_consent(request, req, params)
    if form.get("action") == "cancel":
        return RedirectResponse(_with_query(req.target, {
            "error": "access_denied", "error_description": "The user cancelled the activation",
            "state": req.state}), status_code=302)
    tenant_id, user_id = (form.get("tenant_id") or "").strip(), (form.get("user_id") or "").strip()
    try:
        code = world.approve(req, tenant_id, user_id)
    except LoginError as err:
        return _show_consent(request, req, params, str(err), tenant_id, user_id)
    except CompanyLocked:
        return RedirectResponse(req.target, status_code=302)  # field report: no code, no state, nothing
    except ConsentError as err:
        return HTMLResponse(error_page(str(err)), status_code=403)
    return RedirectResponse(_with_query(req.target, {"code": code, "state": req.state}), status_code=302)


# ---- /_sandbox: control API for other processes (not part of Fortnox) -----------------------------
async def _control(request: Request, action) -> Response:
    world: World = request.app.state.world
    data = {}
    if request.method == "POST":
        try:
            data = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(data, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
    try:
        return JSONResponse(action(world, data))
    except KeyError as err:
        return JSONResponse({"error": f"missing or unknown: {err.args[0] if err.args else err}"}, status_code=400)
    except (ValueError, TypeError) as err:
        return JSONResponse({"error": str(err)}, status_code=400)


def _opt_set(value):
    return None if value is None else set(value)


def _add_company(world: World, d: dict) -> dict:
    c = world.add_company(d["tenant_id"], d["name"], _opt_set(d.get("licences")), bool(d.get("locked", False)))
    return {"tenant_id": c.tenant_id, "name": c.name, "licences": sorted(c.licences), "locked": c.locked,
            "organization_number": c.org_number}


def _add_user(world: World, d: dict) -> dict:
    u = world.add_user(d["tenant_id"], d["user_id"], d["name"], d.get("email", ""), bool(d.get("sysadmin", True)),
                       _opt_set(d.get("rights")))
    return {"tenant_id": u.tenant_id, "user_id": u.user_id, "name": u.name, "sysadmin": u.sysadmin,
            "rights": None if u.rights is None else sorted(u.rights)}


def _issue_grant(world: World, d: dict) -> dict:
    extra = {k: d[k] for k in ("access_expires_in", "refresh_expires_in", "client_id") if d.get(k) is not None}
    return world.issue_grant(d["tenant_id"], d["user_id"], set(d["scopes"]), service=bool(d.get("service", False)),
                             **extra)


def _config(world: World, d: dict) -> dict:
    if "outage" in d:
        if d["outage"] is not None and d["outage"] not in OUTAGE_MODES:
            raise ValueError(f"outage must be null or one of {sorted(OUTAGE_MODES)}")
        world.outage = d["outage"]
    if "outage_scope" in d:
        if d["outage_scope"] not in ("all", "api", "token"):
            raise ValueError("outage_scope must be all, api or token")
        world.outage_scope = d["outage_scope"]
    if "outage_tenants" in d:
        world.outage_tenants = None if d["outage_tenants"] is None else {int(t) for t in d["outage_tenants"]}
    if "latency" in d:
        world.latency = float(d["latency"])
    if "hang_seconds" in d:
        world.hang_seconds = float(d["hang_seconds"])
    if "rate_limit" in d:
        limit = d["rate_limit"]
        world.rate_limit = None if limit is None else (int(limit[0]), float(limit[1]))
    if "error_style" in d:
        if d["error_style"] not in ("lower", "pascal"):
            raise ValueError("error_style must be lower or pascal")
        world.error_style = d["error_style"]
    if "refresh_reuse_revokes" in d:
        world.refresh_reuse_revokes = bool(d["refresh_reuse_revokes"])
    return {
        "outage": world.outage, "outage_scope": world.outage_scope,
        "outage_tenants": None if world.outage_tenants is None else sorted(world.outage_tenants),
        "latency": world.latency, "hang_seconds": world.hang_seconds,
        "rate_limit": None if world.rate_limit is None else list(world.rate_limit),
        "error_style": world.error_style, "refresh_reuse_revokes": world.refresh_reuse_revokes,
    }


def _stats(world: World, d: dict) -> dict:
    by_status: dict[str, int] = {}
    for call in list(world.api_calls):
        by_status[str(call["status"])] = by_status.get(str(call["status"]), 0) + 1
    return {"token_calls": list(world.token_calls), "token_calls_count": len(world.token_calls),
            "api_calls_count": len(world.api_calls), "api_calls_by_status": by_status, "now": world.now()}


def _advance(world: World, d: dict) -> dict:
    world.advance(float(d["seconds"]))
    return {"now": world.now()}


def _done(fn):
    """Wrap a Python-API call that returns nothing into a control action answering {"ok": true}."""
    def action(world: World, d: dict) -> dict:
        fn(world, d)
        return {"ok": True}
    return action


CONTROL = {
    ("POST", "companies"): _add_company,
    ("POST", "users"): _add_user,
    ("POST", "grants"): _issue_grant,
    ("POST", "config"): _config,
    ("POST", "force"): _done(lambda w, d: w.force(d["tenant_id"], d["path"], d["status"], d.get("body"))),
    ("POST", "unforce"): _done(lambda w, d: w.unforce(d.get("tenant_id"), d.get("path"))),
    ("POST", "advance"): _advance,
    ("POST", "remove_integration"): _done(lambda w, d: w.remove_integration(d["tenant_id"])),
    ("POST", "remove_user"): _done(lambda w, d: w.remove_user(d["tenant_id"], d["user_id"])),
    ("POST", "licences"): _done(lambda w, d: w.set_licences(d["tenant_id"], _opt_set(d.get("licences")))),
    ("POST", "revoke"): lambda w, d: {"revoked": w.revoke(d["refresh_token"])},
    ("POST", "legacy_token"): lambda w, d: {"legacy_access_token": w.legacy_token(d["tenant_id"])},
    ("POST", "reset_stats"): _done(lambda w, d: w.reset_stats()),
    ("GET", "stats"): _stats,
    ("GET", "health"): lambda w, d: {"status": "ok", "now": w.now()},
}


def _control_route(method: str, name: str, action) -> Route:
    async def endpoint(request: Request) -> Response:
        return await _control(request, action)
    return Route(f"/_sandbox/{name}", endpoint, methods=[method], name=f"sandbox_{name}")


def create_app(world: World) -> Starlette:
    app = Starlette(routes=[
        Route("/oauth-v1/auth", authorize, methods=["GET", "POST"]),
        Route("/oauth-v1/token", token, methods=["POST"]),
        Route("/oauth-v1/revoke", revoke, methods=["POST"]),
        Route("/3/{path:path}", api, methods=["GET"]),
        *(_control_route(method, name, action) for (method, name), action in CONTROL.items()),
    ])
    app.state.world = world
    return app
