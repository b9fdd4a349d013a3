"""Authentication on calls: basic, bearer, digest, OAuth2 and OIDC, inline, named, from secrets; `$authorization`."""

from __future__ import annotations

import base64

from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import issues_of, run_with


def secured(uri: str, auth: str, extra: str = "") -> str:
    """A document calling `uri` with the authentication block `auth` (one flow-style YAML line)."""
    return f"""
        {extra}
        do:
          - c:
              call: http
              with:
                method: get
                endpoint:
                  uri: {uri}
                  authentication: {auth}
        """


def oauth2(mock: MockServer, **fields: str) -> str:
    """An inline oauth2 policy against the mock authority, with extra flow-style fields."""
    extra = "".join(f", {k}: {v}" for k, v in fields.items())
    return f"{{oauth2: {{authority: '{mock.url}', grant: client_credentials, client: {{id: app, secret: s3cret}}{extra}}}}}"


async def test_basic_from_expressions_and_authorization_argument(mock: MockServer) -> None:
    """Basic credentials may come from the input; `$authorization` shows scheme and parameter to `output.as`."""
    body = secured(f"{mock.url}/basic-auth/{{user}}/{{pw}}", "{basic: {username: '${ .user }', password: '${ .pw }'}}")
    body += "      output: {as: '${ {body: ., auth: $authorization} }'}\n"  # joins the template's last line
    result, _ = await run_with(body, {"user": "ada", "pw": "s3cret"})
    assert result.output["body"] == {"authenticated": True, "user": "ada"}
    assert result.output["auth"] == {"scheme": "Basic", "parameter": base64.b64encode(b"ada:s3cret").decode()}


async def test_wrong_basic_credentials_give_401(mock: MockServer) -> None:
    """A refused login is the communication error with 401."""
    result, _ = await run_with(secured(f"{mock.url}/basic-auth/ada/right", "{basic: {username: ada, password: wrong}}"))
    assert result.error["status"] == 401


async def test_named_policy_with_settings_from_a_secret(mock: MockServer) -> None:
    """`use: name` picks a `use.authentications` entry whose settings are a declared secret."""
    extra = "use:\n          secrets: [login]\n          authentications:\n            site: {basic: {use: login}}"
    body = secured(f"{mock.url}/basic-auth/ada/pw", "{use: site}", extra)
    result, _ = await run_with(body, secrets={"login": {"username": "ada", "password": "pw"}})
    assert result.output == {"authenticated": True, "user": "ada"}


async def test_secret_not_declared_is_an_authorization_error(mock: MockServer) -> None:
    """Settings from a secret the workflow did not declare fault with 403."""
    result, _ = await run_with(secured(f"{mock.url}/basic-auth/a/b", "{basic: {use: nope}}"))
    assert (result.error["status"], result.error["title"]) == (403, "Missing secret")


async def test_secret_values_are_masked_in_events(mock: MockServer) -> None:
    """A secret password used for a call never appears in the lifecycle events."""
    extra = "use:\n          secrets: [login]"
    body = secured(f"{mock.url}/anything", "{bearer: {token: '${ $secrets.login }'}}", extra)
    body = body.replace("with:", "input: {from: '${ {} }'}\n              with:", 1)
    result, recorder = await run_with(body, secrets={"login": "very-secret-token"})
    assert result.status.value == "completed", result.error
    assert "very-secret-token" not in str([e.data for e in recorder.events])


async def test_bearer_token_is_sent(mock: MockServer) -> None:
    """A bearer token goes in the Authorization header."""
    result, _ = await run_with(secured(f"{mock.url}/anything", "{bearer: {token: abc}}"))
    assert result.output["headers"]["Authorization"] == "Bearer abc"


async def test_digest_challenge_is_answered(mock: MockServer) -> None:
    """Digest authentication answers the server's challenge."""
    result, _ = await run_with(
        secured(f"{mock.url}/digest-auth/auth/ada/pw", "{digest: {username: ada, password: pw}}")
    )
    assert result.output == {"authenticated": True, "user": "ada"}


async def test_oauth2_client_credentials_token_is_fetched_once(mock: MockServer) -> None:
    """Two calls in one run fetch one token; the API sees it as a bearer token."""
    body = f"""
        use:
          authentications:
            api: {oauth2(mock, scopes="[read, write]", audiences="[pets]")}
        do:
          - first: {{call: http, with: {{method: get, endpoint: {{uri: '{mock.url}/secure', authentication: {{use: api}}}}}}}}
          - second: {{call: http, with: {{method: get, endpoint: {{uri: '{mock.url}/secure', authentication: {{use: api}}}}}}}}
        """
    before = mock.state["token_requests"]
    result, _ = await run_with(body)
    assert result.output["ok"] is True
    assert mock.state["token_requests"] == before + 1
    fields = mock.state["last_token_request"]["fields"]
    assert fields["scope"] == "read write"
    assert fields["audience"] == "pets"


async def test_oauth2_password_grant_with_basic_client_and_json_encoding(mock: MockServer) -> None:
    """The password grant, client_secret_basic and a JSON token request work together."""
    policy = (
        f"{{oauth2: {{authority: '{mock.url}', grant: password, username: ada, password: lovelace,"
        " client: {id: app, secret: s3cret, authentication: client_secret_basic},"
        " request: {encoding: application/json}}}"
    )
    result, _ = await run_with(secured(f"{mock.url}/secure", policy))
    assert result.output["ok"] is True
    last = mock.state["last_token_request"]
    assert last["authorization"].startswith("Basic ")
    assert "client_secret" not in last["fields"]


async def test_refused_token_request_is_an_authentication_error(mock: MockServer) -> None:
    """A token endpoint answering 401 faults with the authentication error (401)."""
    policy = f"{{oauth2: {{authority: '{mock.url}', grant: client_credentials, client: {{id: app, secret: bad}}}}}}"
    result, _ = await run_with(secured(f"{mock.url}/secure", policy))
    assert result.error["type"].endswith("/authentication")
    assert result.error["status"] == 401


async def test_oidc_discovers_the_token_endpoint(mock: MockServer) -> None:
    """OIDC reads the token endpoint from the authority's discovery document."""
    policy = f"{{oidc: {{authority: '{mock.url}', grant: client_credentials, client: {{id: app, secret: s3cret}}}}}}"
    result, _ = await run_with(secured(f"{mock.url}/secure", policy))
    assert result.output["ok"] is True


async def test_a_401_drops_the_cached_token(mock: MockServer) -> None:
    """When the API refuses a cached token, the next call fetches a fresh one."""
    body = f"""
        do:
          - first:
              try:
                - c: {{call: http, with: {{method: get, endpoint: {{uri: '{mock.url}/secure', authentication: {oauth2(mock)}}}}}}}
              catch:
                do:
                  - noted: {{set: {{refused: true}}}}
          - again:
              call: http
              with: {{method: get, endpoint: {{uri: '{mock.url}/secure', authentication: {oauth2(mock)}}}}}
        """
    # The next token the mock issues is revoked at once: the first call is refused with it.
    mock.state["revoked"].update({f"tok-{mock.state['token_requests'] + 1}"})
    result, _ = await run_with(body)
    assert result.output["ok"] is True
    assert result.output["token"] == f"tok-{mock.state['token_requests']}"


def test_interactive_grants_are_refused_at_validation() -> None:
    """`authorization_code` needs a user: refused as not supported."""
    body = secured("http://x/y", "{oauth2: {authority: 'http://x', grant: authorization_code}}")
    issues = issues_of(body)
    assert [i.code for i in issues] == ["unsupported"]
    assert "authorization_code" in issues[0].message


def test_unknown_named_policy_is_invalid() -> None:
    """`use: missing` names no `use.authentications` entry: the document is invalid."""
    issues = issues_of(secured("http://x/y", "{use: missing}"))
    assert issues
    assert "missing" in issues[0].message
