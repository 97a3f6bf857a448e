"""`defectops ui`: pending list, review page (challenger vs champion), approve / reject / rollback.

Decisions go through `defectops.registry`, the same code path as the CLI: four-eyes, required
reasons and the audit log are enforced there, not here. Server-rendered pages, no external
assets: it works on an air-gapped line.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from defectops import identity, registry
from defectops.components.deploy.verify import REFUSED_TAG, recorded_variants
from defectops.errors import DefectopsError
from defectops.evidence import Evidence
from defectops.feedback.config import FeedbackConfig
from defectops.registries import Registry, open_registry
from defectops.ui import auth, evidence

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
ROWS = [("recall", "recall"), ("precision", "precision"), ("recall 95 % lower bound (val)", "lower_bound"),
        ("threshold", "threshold"), ("mAP50", "map50"), ("image-level accuracy", "accuracy"),
        ("missed defective images", "missed")]


def _fmt(ev: Evidence | None, key: str) -> str:
    if ev is None or not ev.metrics:
        return "—"
    m = ev.metrics
    values = {"recall": m["test"]["recall"], "precision": m["test"]["precision"],
              "lower_bound": m.get("val_recall_lower_bound"), "threshold": m["threshold"],
              "map50": m.get("test_map50"), "accuracy": m.get("test_accuracy"),
              "missed": len(m.get("test_false_negatives", []))}
    value = values[key]
    return "—" if value is None else str(value) if isinstance(value, int) else f"{value:.3f}"


def _age(info: registry.VersionInfo) -> str:
    stamp = info.tags.get("registered_at")
    if not stamp:
        return ""
    minutes = (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds() / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.0f} h" if minutes < 2880 else f"{minutes / 1440:.0f} d"


PROXY_SECRET_HEADER = "x-defectops-proxy-secret"
SECRET_ENV = "DEFECTOPS_UI_SECRET"
STATIC = Path(__file__).parent / "static"
# No inline script anywhere, no framing, forms post only here: an injected tag has nothing to run.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store"}
# The inspection page alone runs a script: this site's own box editor, never an inline one.
INSPECT_CSP = PAGE_HEADERS["Content-Security-Policy"] + "; script-src 'self'"
# The drift report is Evidently's self-contained HTML with inline scripts: it runs sandboxed in an
# opaque origin, so its scripts can reach neither the session nor the CSRF token.
REPORT_CSP = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data:; font-src data:; frame-ancestors 'none'")


def create_app(model_name: str, users_file: Path, trusted_header: str | None = None,
               backend: Registry | None = None, proxy_secret: str | None = None,
               local: bool = True, reports_root: Path = Path("monitoring"),
               records: str | None = "monitoring/decisions.db", feedback=None,
               archive_root: Path = Path("archive"), deploy_root: Path = Path("deploy")) -> FastAPI:
    """`trusted_header` takes the user's name from a header set by an authenticating proxy; the proxy
    proves itself with `proxy_secret` in PROXY_SECRET_HEADER, or any client could name itself.

    `local` (bound to loopback) allows a per-process session secret and cookies over plain HTTP;
    otherwise the page needs $DEFECTOPS_UI_SECRET (sessions survive restarts and span workers) and
    sends cookies only over HTTPS. Drift reports are served only from inside `reports_root`.
    `records` is the endpoint's decision store: the page shows what each version does on the line, and
    inspectors answer its uncertain parts (`/inspect`, images from `archive_root`, heatmaps from the
    versions exported under `deploy_root`); `feedback` is the FeedbackConfig (which parts, in what order).
    """
    if trusted_header and not proxy_secret:
        raise ValueError(f"trusted-header mode ({trusted_header}) needs a proxy secret (DEFECTOPS_PROXY_SECRET) that "
                         f"the proxy sends in {PROXY_SECRET_HEADER}; without it any client could claim any name")
    secret = os.environ.get(SECRET_ENV)
    if not local and not secret:
        raise ValueError(f"serving beyond loopback needs a persistent session secret: set {SECRET_ENV} (from your "
                         "secret store); a random one per process logs approvers out on every restart and worker")
    backend = backend or open_registry(model_name)
    reports_root = Path(reports_root).resolve()
    limiter = auth.LoginLimiter()

    @contextlib.asynccontextmanager
    async def warm_up(_: FastAPI):
        # Pay MLflow's and matplotlib's import and the first registry query at start, not on an
        # approver's first click.
        import matplotlib.pyplot  # noqa: F401

        backend.versions()
        yield

    app = FastAPI(title="defectops review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=warm_up)
    app.add_middleware(SessionMiddleware, secret_key=secret or secrets.token_hex(32), same_site="strict",
                       max_age=8 * 3600, https_only=not local)  # the session cookie is always HttpOnly

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for key, value in PAGE_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def confined(ref: str | None) -> Path | None:
        """A path from a registry tag or a trigger file, only if it lies inside the reports folder."""
        if not ref:
            return None
        path = Path(ref).resolve()
        return path if path.is_relative_to(reports_root) and path.is_file() else None

    def trigger_of(info: registry.VersionInfo) -> dict:
        file = confined(info.tags.get("trigger_ref"))
        try:
            return json.loads(file.read_text()) if file else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def user_of(request: Request) -> str | None:
        if trusted_header:  # behind an authenticating proxy that sets this header
            if not secrets.compare_digest(request.headers.get(PROXY_SECRET_HEADER, "").encode(),
                                          proxy_secret.encode()):
                raise HTTPException(401, f"{trusted_header} is only believed from the proxy "
                                         f"({PROXY_SECRET_HEADER} missing or wrong)")
            return identity.normalise(request.headers.get(trusted_header)) or None
        return request.session.get("user")

    def roles_of(request: Request, user: str) -> tuple[str, ...]:
        """A proxy-named person's roles come from the users file; a signed-in one's were read at login."""
        if trusted_header:
            return auth.roles_of(auth.load_users(users_file), user)
        return tuple(request.session.get("roles") or auth.LEGACY_ROLES)

    def may_decide(request: Request, user: str) -> str | None:
        """Why this person may not decide about models (an inspector), or None."""
        try:
            auth.require_role(user, roles_of(request, user), "decide")
        except DefectopsError as exc:
            return str(exc)
        return None

    def csrf_token(request: Request) -> str:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(32)
        return request.session["csrf"]

    def check_csrf(request: Request, token: str) -> None:
        expected = request.session.get("csrf")
        if not expected or not secrets.compare_digest(token or "", expected):
            raise HTTPException(403, "form expired or forged (CSRF token mismatch): reload the page")

    def page(request: Request, template: str, status: int = 200, headers: dict | None = None,
             **context) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, template, {"user": user_of(request), "csrf": csrf_token(request),
                                                              **context}, status_code=status, headers=headers)

    def require_user(request: Request) -> str:
        user = user_of(request)
        if not user:
            raise HTTPException(303, headers={"Location": "/login"})
        return user

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request):
        return page(request, "login.html")

    @app.get("/static/site.css")
    def stylesheet():
        return FileResponse(STATIC / "site.css", media_type="text/css")

    @app.get("/static/label.js")
    def labelling_script():
        return FileResponse(STATIC / "label.js", media_type="text/javascript")

    @app.post("/login")
    def login(request: Request, username: str = Form(...), password: str = Form(...), csrf: str = Form("")):
        check_csrf(request, csrf)
        client = request.client.host if request.client else "?"
        wait = limiter.retry_after(client, username)
        if wait:
            return page(request, "login.html", status=429, error=f"Too many failed sign-ins; try again in {wait} s.",
                        headers={"Retry-After": str(wait)})
        if not auth.check_password(auth.load_users(users_file), username, password):
            limiter.failed(client, username)
            return page(request, "login.html", status=401, error="Unknown name or wrong password.")
        known = auth.load_users(users_file)
        request.session["user"] = identity.normalise(username)
        request.session["roles"] = list(auth.roles_of(known, username))
        request.session["csrf"] = secrets.token_urlsafe(32)  # new session, new token
        approver = "approver" in request.session["roles"]
        return RedirectResponse("/" if approver else "/inspect", status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        check_csrf(request, csrf)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    opened: dict = {}

    def decision_store():
        """The endpoint's store, once it exists; one engine for the page's life, not one per request."""
        if not records or ("://" not in records and not Path(records).exists()):
            return None
        from defectops.records.store import DecisionStore

        if "store" not in opened:
            opened["store"] = DecisionStore(records)
        return opened["store"]

    def on_the_line() -> tuple[list[dict], list[dict]]:
        """Decisions per model version in the last 24 h, and inspectors' disagreement per version and class."""
        store = decision_store()
        if store is None:
            return [], []
        from datetime import timedelta

        from defectops.feedback.answers import disagreement

        return store.by_version(datetime.now(UTC) - timedelta(hours=24)).to_dict("records"), disagreement(store)

    @app.get("/", response_class=HTMLResponse)
    def pending(request: Request):
        require_user(request)
        versions = backend.versions()
        waiting = [v for v in versions if v.tags.get("approval") == "pending"]
        live, disagreements = on_the_line()
        return page(request, "pending.html", pending=waiting, versions=list(reversed(versions)), live=live,
                    disagreements=disagreements,
                    champion=next((v for v in versions if registry.CHAMPION in v.aliases), None),
                    ages={v.version: _age(v) for v in waiting})

    def review(request: Request, version: str, status: int = 200, **extra) -> HTMLResponse:
        ev = backend.evidence(version)
        champion = backend.champion()
        champ = backend.evidence(champion.version) if champion and champion.version != version else None
        card = ev.file("model_card.md")
        trigger = trigger_of(ev.info)
        import mistune

        markdown = mistune.create_markdown(escape=True, plugins=["table"])
        return page(request, "review.html", status=status, name=model_name, ev=ev, champ=champ, rows=ROWS, fmt=_fmt,
                    model_card=markdown(card.read_text()) if card else None, trigger=trigger,
                    trigger_report=trigger.get("report"), history=evidence.history(model_name),
                    variants=recorded_variants(ev.info.tags),
                    refused=recorded_variants(ev.info.tags, REFUSED_TAG), **extra)

    @app.get("/versions/{version}", response_class=HTMLResponse)
    def version_page(request: Request, version: str, message: str | None = None):
        require_user(request)
        return review(request, version, message=message)

    @app.post("/versions/{version}/decide")
    def decide(request: Request, version: str, action: str = Form(...), reason: str = Form(""),
               csrf: str = Form(""), acknowledge: str = Form("")):
        user = require_user(request)
        check_csrf(request, csrf)
        if action not in ("approve", "reject"):
            raise HTTPException(400, f"unknown action {action!r}")
        if refusal := may_decide(request, user):
            raise HTTPException(403, refusal)
        try:
            backend.decide(action, version, user, reason, acknowledge == "yes")
        except registry.RegistryError as exc:
            return review(request, version, status=409, error=str(exc))
        verb = "approved: it is now the champion" if action == "approve" else "rejected"
        return RedirectResponse(f"/versions/{version}?message=v{version} {verb}", status_code=303)

    @app.post("/rollback")
    def rollback(request: Request, reason: str = Form(""), csrf: str = Form("")):
        user = require_user(request)
        check_csrf(request, csrf)
        current = backend.champion()
        if refusal := may_decide(request, user):
            raise HTTPException(403, refusal)
        try:
            restored = backend.rollback(user, reason)
        except registry.RegistryError as exc:
            return review(request, current.version if current else "1", status=409, error=str(exc))
        return RedirectResponse(f"/versions/{restored.version}?message=rolled back to v{restored.version}",
                                status_code=303)

    @app.get("/versions/{version}/pr.png")
    def pr_png(request: Request, version: str):
        require_user(request)
        champion = backend.champion()
        champion_version = champion.version if champion and champion.version != version else None
        return Response(_pr_png_cached(version, champion_version), media_type="image/png")

    @functools.lru_cache(maxsize=128)
    def _pr_png_cached(version: str, champion_version: str | None) -> bytes:
        """Evaluations never change once logged, so a (challenger, champion) pair renders once."""
        champ = backend.evidence(champion_version) if champion_version else None
        return evidence.pr_png(backend.evidence(version), champ)

    @app.get("/versions/{version}/artifact/{name}")
    def artifact(request: Request, version: str, name: str):
        require_user(request)
        if name not in ("false_negatives.png", "pr_curve.png", "model_card.md"):
            raise HTTPException(404, f"no artefact named {name}")
        path = backend.evidence(version).file(name)
        if path is None:
            raise HTTPException(404, f"v{version} has no {name}")
        return FileResponse(path)

    @app.get("/versions/{version}/trigger-report")
    def trigger_report(request: Request, version: str):
        require_user(request)
        report = confined(trigger_of(backend.get(version)).get("report"))
        if report is None:
            raise HTTPException(404, f"this version was not trained on a drift alert, or its report is gone or lies "
                                     f"outside {reports_root}")
        return FileResponse(report, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP})

    from defectops.ui.inspect import Inspection, add_inspection_routes

    add_inspection_routes(app, Inspection(feedback or FeedbackConfig(), decision_store, Path(archive_root).resolve(),
                                          Path(deploy_root), backend, INSPECT_CSP),
                          page, require_user, roles_of, check_csrf)

    @app.exception_handler(HTTPException)
    async def http_errors(request: Request, exc: HTTPException):
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["Location"], status_code=303)
        # The detail can echo the URL (an artefact name): escaped, or a crafted link runs script as the approver.
        return HTMLResponse(f"<h3>{exc.status_code}</h3><p>{html.escape(str(exc.detail))}</p>",
                            status_code=exc.status_code)

    return app
