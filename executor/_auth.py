"""Authentication policies: compiled once, resolved per call into credentials and the `$authorization` argument.

A policy is written inline on an endpoint (`authentication: {basic: {...}}`), named from `use.authentications`
(`authentication: {use: name}`), and its settings are either inline — strings may be `${ … }` expressions,
evaluated against the task's transformed input — or taken whole from a secret (`basic: {use: secretName}`, the
secret being an object with the same properties). A secret the workflow did not declare or was not given is the
authorization error (403).

- `basic` → `Authorization: Basic …`; `$authorization` = `{scheme: Basic, parameter: base64(user:password)}`.
- `bearer` → `Authorization: Bearer <token>`.
- `digest` → the RFC 7616 challenge/response (httpx); `parameter` is the username (the header depends on the
  server's challenge, so it does not exist before the call).
- `oauth2` → a token from `authority` + `endpoints.token` (default `/oauth2/token`); `oidc` → the same, with the
  token endpoint read from the authority's `/.well-known/openid-configuration`. Grants: `client_credentials`,
  `password` and token exchange; client authentication `client_secret_post` (default), `client_secret_basic`,
  `client_secret_jwt` / `private_key_jwt` (with the given `client.assertion`) and `none`. Tokens are cached per
  process until 30 s before `expires_in` (60 s when the server gives none) and dropped when an API answers 401.
  When `issuers` is set and the token is a JWT, its `iss` claim must be one of them. `authorization_code` and
  `refresh_token` need a user or a stored refresh token, which a document cannot carry: refused at validation.
  A refused token request is the authentication error (401).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from ._errors import AuthenticationError, AuthorizationError, ConfigurationError
from ._expr import Evaluator, Vars, compile_template
from ._http import excerpt, transport_error
from ._model import Unsupported

if TYPE_CHECKING:
    from ._run import Run

SCHEMES = ("basic", "bearer", "digest", "oauth2", "oidc")
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
_GRANTS = frozenset({"client_credentials", "password", _TOKEN_EXCHANGE})
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_DISCOVERY = "/.well-known/openid-configuration"
_EARLY_EXPIRY = 30.0
_DEFAULT_LIFETIME = 60.0


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """A compiled policy: the scheme and either a settings template or the name of the secret holding them."""

    scheme: str
    settings: Evaluator | None
    secret: str | None


@dataclass(frozen=True, slots=True)
class Credentials:
    """A resolved policy: what goes on the request, and what `$authorization` shows."""

    headers: Mapping[str, str]
    descriptor: Mapping[str, Any]
    auth: httpx.Auth | None = None
    token_key: str | None = None


def compile_auth(use: Mapping[str, Any], value: Any) -> AuthPolicy | None:
    """Compile an `authentication` value (inline or `{use: name}`); None when absent."""
    if value is None:
        return None
    if isinstance(value, Mapping) and "use" in value:
        named = (use.get("authentications") or {}).get(value["use"])
        if named is None:
            raise KeyError(f"no authentication named {value['use']!r} in use.authentications")
        value = named
    scheme = next((s for s in SCHEMES if s in value), None)
    if scheme is None:
        raise Unsupported(f"authentication scheme {next(iter(value), '?')!r}")
    settings = value[scheme]
    if isinstance(settings, str):
        return AuthPolicy(scheme, None, settings)
    if set(settings) == {"use"}:
        return AuthPolicy(scheme, None, str(settings["use"]))
    _check_grant(scheme, settings)
    return AuthPolicy(scheme, compile_template(dict(settings)), None)


def _check_grant(scheme: str, settings: Mapping[str, Any]) -> None:
    grant = settings.get("grant")
    if scheme in ("oauth2", "oidc") and isinstance(grant, str) and grant not in _GRANTS:
        raise Unsupported(f"OAuth2 grant {grant!r} (a workflow cannot take part in it without a user)")


async def resolve(rt: Run, policy: AuthPolicy, data: Any, variables: Vars) -> Credentials:
    """Evaluate the policy's settings and produce credentials (fetching an OAuth2 token when needed).

    The token that goes on the request (a Basic token, a bearer or fetched access token) is added to the run's
    mask: it is a form of a secret the runtime derived itself, so no event, error or log line may show it.
    """
    credentials = await _resolve(rt, policy, data, variables)
    if credentials.descriptor.get("scheme") in ("Basic", "Bearer"):
        rt.mask.add(str(credentials.descriptor.get("parameter") or ""))
    return credentials


async def _resolve(rt: Run, policy: AuthPolicy, data: Any, variables: Vars) -> Credentials:
    settings = _settings(rt, policy, data, variables)
    if policy.scheme == "basic":
        token = base64.b64encode(f"{_req(settings, 'username')}:{_req(settings, 'password')}".encode()).decode()
        return Credentials({"Authorization": f"Basic {token}"}, {"scheme": "Basic", "parameter": token})
    if policy.scheme == "bearer":
        token = _req(settings, "token")
        return Credentials({"Authorization": f"Bearer {token}"}, {"scheme": "Bearer", "parameter": token})
    if policy.scheme == "digest":
        user = _req(settings, "username")
        auth = httpx.DigestAuth(user, _req(settings, "password"))
        return Credentials({}, {"scheme": "Digest", "parameter": user}, auth=auth)
    return await _oauth2(rt, policy.scheme, settings)


def _settings(rt: Run, policy: AuthPolicy, data: Any, variables: Vars) -> Mapping[str, Any]:
    if policy.settings is not None:
        settings = policy.settings(data, variables)
    elif policy.secret in rt.secrets:
        settings = rt.secrets[policy.secret]
    else:
        raise AuthorizationError(
            "Missing secret", detail=f"authentication needs secret {policy.secret!r}, which is not declared or given"
        )
    if not isinstance(settings, Mapping):
        raise ConfigurationError("Invalid authentication", detail=f"{policy.scheme} settings must be an object")
    if policy.secret is not None:
        _check_grant(policy.scheme, settings)
    return settings


def _req(settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if value is None:
        raise ConfigurationError("Invalid authentication", detail=f"missing {key!r}")
    return str(value)


class TokenCache:
    """OAuth2 tokens and OIDC discovery answers, shared by every run of one executor."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.endpoints: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        """The cached token, unless it is (nearly) expired."""
        entry = self._tokens.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, key: str, token: str, lifetime: float) -> None:
        """Remember `token` for `lifetime` seconds less the safety margin."""
        self._tokens[key] = (token, time.monotonic() + max(0.0, lifetime - _EARLY_EXPIRY))

    def invalidate(self, key: str) -> None:
        """Forget a token the API refused."""
        self._tokens.pop(key, None)

    def lock(self, key: str) -> asyncio.Lock:
        """One lock per token, so concurrent calls fetch it once."""
        return self._locks.setdefault(key, asyncio.Lock())


@dataclass(frozen=True, slots=True)
class _TokenRequest:
    url: str
    form: dict[str, Any]
    client_basic: tuple[str, str] | None
    as_json: bool
    issuers: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """The token's identity: everything that would make the authority answer differently."""
        identity = [self.url, self.form, self.as_json, self.client_basic]
        return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def _oauth2(rt: Run, scheme: str, settings: Mapping[str, Any]) -> Credentials:
    io = rt.executor.io
    request = _token_request(await _token_url(rt, scheme, settings), settings)
    key = request.key
    token = io.tokens.get(key)
    if token is None:
        async with io.tokens.lock(key):
            token = io.tokens.get(key) or await _fetch_token(rt, request, key)
    return Credentials({"Authorization": f"Bearer {token}"}, {"scheme": "Bearer", "parameter": token}, token_key=key)


async def _token_url(rt: Run, scheme: str, settings: Mapping[str, Any]) -> str:
    authority = _req(settings, "authority").rstrip("/")
    if scheme == "oauth2":
        path = str((settings.get("endpoints") or {}).get("token") or "/oauth2/token")
        return path if "://" in path else f"{authority}/{path.lstrip('/')}"
    discovery = authority if authority.endswith(_DISCOVERY) else authority + _DISCOVERY
    cache = rt.executor.io.tokens.endpoints
    if discovery not in cache:
        document = await _get_json(rt, discovery, "OpenID discovery failed")
        if not isinstance(document, dict) or not isinstance(document.get("token_endpoint"), str):
            raise AuthenticationError("OpenID discovery failed", detail=f"{discovery} names no token_endpoint")
        cache[discovery] = document["token_endpoint"]
    return cache[discovery]


def _token_request(url: str, s: Mapping[str, Any]) -> _TokenRequest:
    grant = str(s.get("grant") or "client_credentials")
    form: dict[str, Any] = {"grant_type": grant}
    if s.get("scopes"):
        form["scope"] = " ".join(map(str, s["scopes"]))
    if s.get("audiences"):
        form["audience"] = [str(a) for a in s["audiences"]]
    if grant == "password":
        form |= {"username": _req(s, "username"), "password": _req(s, "password")}
    for role in ("subject", "actor"):
        if isinstance(s.get(role), Mapping):
            form |= {f"{role}_token": s[role].get("token"), f"{role}_token_type": s[role].get("type")}
    client_basic = _client_auth(s.get("client") or {}, form)
    encoding = str((s.get("request") or {}).get("encoding") or "")
    issuers = tuple(str(i) for i in s.get("issuers") or ())
    return _TokenRequest(url, form, client_basic, encoding.endswith("json"), issuers)


def _client_auth(client: Mapping[str, Any], form: dict[str, Any]) -> tuple[str, str] | None:
    """Put the client's credentials in the form, or return them for HTTP Basic (`client_secret_basic`)."""
    method = client.get("authentication") or "client_secret_post"
    client_id, secret = client.get("id"), client.get("secret")
    if method == "client_secret_basic":
        return str(client_id or ""), str(secret or "")
    if client_id is not None:
        form["client_id"] = str(client_id)
    if method == "client_secret_post" and secret is not None:
        form["client_secret"] = str(secret)
    elif method in ("client_secret_jwt", "private_key_jwt"):
        form |= {"client_assertion_type": _JWT_BEARER, "client_assertion": client.get("assertion")}
    return None


async def _fetch_token(rt: Run, request: _TokenRequest, key: str) -> str:
    auth = httpx.BasicAuth(*request.client_basic) if request.client_basic else httpx.USE_CLIENT_DEFAULT
    accept = {"Accept": "application/json"}
    client = rt.executor.io.http
    try:
        if request.as_json:
            response = await client.post(request.url, auth=auth, headers=accept, json=request.form)
        else:
            response = await client.post(request.url, auth=auth, headers=accept, data=request.form)
    except httpx.HTTPError as exc:
        raise transport_error(exc, "POST", request.url) from None
    if not response.is_success:
        raise AuthenticationError(
            "Token request refused",
            detail=f"POST {request.url} answered {response.status_code}: {excerpt(response.content)}",
        )
    token, lifetime = _parse_token(response, request)
    rt.executor.io.tokens.put(key, token, lifetime)
    return token


def _parse_token(response: httpx.Response, request: _TokenRequest) -> tuple[str, float]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    token = payload.get("access_token") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token:
        raise AuthenticationError("Token request failed", detail=f"{request.url} returned no access_token")
    if request.issuers and (issuer := _jwt_issuer(token)) is not None and issuer not in request.issuers:
        raise AuthenticationError("Untrusted token issuer", detail=f"token issued by {issuer!r}")
    lifetime = payload.get("expires_in") if isinstance(payload, dict) else None
    return token, float(lifetime) if isinstance(lifetime, int | float) else _DEFAULT_LIFETIME


def _jwt_issuer(token: str) -> str | None:
    """The `iss` claim of a JWT (not verified: the token came from the configured authority over its channel)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


async def _get_json(rt: Run, url: str, title: str) -> Any:
    try:
        response = await rt.executor.io.http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise transport_error(exc, "GET", url) from None
    if not response.is_success:
        raise AuthenticationError(title, detail=f"GET {url} answered {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise AuthenticationError(title, detail=f"GET {url} did not return JSON") from None
