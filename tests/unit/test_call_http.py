"""`call: http` against the local mock: requests, output forms, redirects, errors and the outbound policy."""

from __future__ import annotations

import base64
import socket

from executor import EngineOptions
from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import issues_of, run_with

COMM = "https://serverlessworkflow.io/spec/1.0.0/errors/communication"


def call(uri: str, extra: str = "") -> str:
    """A one-task document calling `uri` with GET (plus extra `with` lines, already indented)."""
    return f"do:\n  - c:\n      call: http\n      with:\n        method: get\n        endpoint: '{uri}'\n{extra}"


async def test_get_with_uri_template_gives_decoded_json(mock: MockServer) -> None:
    """`{petId}` is expanded from the input and a JSON answer becomes data."""
    result, _ = await run_with(call(f"{mock.url}/v2/pet/{{petId}}"), {"petId": 1})
    assert result.status.value == "completed", result.error
    assert result.output["name"] == "doggie"


async def test_response_output_has_the_spec_shape(mock: MockServer) -> None:
    """`output: response` gives request, statusCode, headers (server spelling) and content."""
    result, _ = await run_with(call(f"{mock.url}/v2/pet/2", "        output: response\n"))
    out = result.output
    assert out["request"]["method"] == "get"
    assert out["request"]["uri"] == f"{mock.url}/v2/pet/2"
    assert "User-Agent" in out["request"]["headers"] or "user-agent" in out["request"]["headers"]
    assert out["statusCode"] == 200
    assert out["headers"]["Content-Type"] == "application/json"
    assert out["content"]["name"] == "Milou"


async def test_raw_output_is_base64(mock: MockServer) -> None:
    """`output: raw` gives the body base64-encoded."""
    result, _ = await run_with(call(f"{mock.url}/text", "        output: raw\n"))
    assert base64.b64decode(result.output) == "héllo".encode()


async def test_text_and_binary_bodies(mock: MockServer) -> None:
    """Text comes back as text; a binary body as base64."""
    text, _ = await run_with(call(f"{mock.url}/text"))
    binary, _ = await run_with(call(f"{mock.url}/bytes"))
    assert text.output == "héllo"
    assert base64.b64decode(binary.output) == bytes(range(256))


async def test_headers_query_and_json_body_are_evaluated(mock: MockServer) -> None:
    """Expressions in headers, query and body are evaluated; lists repeat, booleans read `true`, nulls drop."""
    body = f"""
        do:
          - c:
              call: http
              with:
                method: post
                endpoint: {mock.url}/anything/{{kind}}
                headers:
                  X-Trace: '${{ .trace }}'
                query: '${{ {{tag: ["a", "b"], flag: true, skip: null}} }}'
                body:
                  name: '${{ .name }}'
                  n: 2
        """
    result, _ = await run_with(body, {"kind": "pets", "trace": "t-1", "name": "Ada"})
    echo = result.output
    assert echo["method"] == "POST"
    assert echo["path"] == "/anything/pets"
    assert echo["args"] == {"tag": ["a", "b"], "flag": ["true"]}
    assert echo["headers"]["X-Trace"] == "t-1"
    assert echo["json"] == {"name": "Ada", "n": 2}


async def test_query_adds_to_a_query_in_the_uri(mock: MockServer) -> None:
    """`query` parameters are added to those the endpoint URI already carries."""
    result, _ = await run_with(call(f"{mock.url}/anything?fixed=1", "        query: {extra: '2'}\n"))
    assert result.output["args"] == {"fixed": ["1"], "extra": ["2"]}


async def test_string_and_form_bodies(mock: MockServer) -> None:
    """A string body is sent as text; an object with a form content type is form-encoded."""
    text_body = call(f"{mock.url}/anything", "        body: hello\n").replace("get", "post")
    form_body = call(
        f"{mock.url}/anything",
        "        headers: {Content-Type: application/x-www-form-urlencoded}\n        body: {a: 1, b: x}\n",
    ).replace("get", "post")
    text, _ = await run_with(text_body)
    form, _ = await run_with(form_body)
    assert text.output["data"] == "hello"
    assert text.output["headers"]["Content-Type"].startswith("text/plain")
    assert form.output["form"] == {"a": "1", "b": "x"}


async def test_endpoint_may_be_an_expression(mock: MockServer) -> None:
    """A `${ }` endpoint is evaluated (runtime arguments available), not expanded as a template."""
    body = "do:\n  - c:\n      call: http\n      with:\n        method: get\n        endpoint: '${ .base + \"/v2/pet/1\" }'\n"
    result, _ = await run_with(body, {"base": mock.url})
    assert result.output["id"] == 1


async def test_non_2xx_is_a_communication_error_with_the_status(mock: MockServer) -> None:
    """A 404 faults with the communication error carrying 404, a title and a body excerpt."""
    result, _ = await run_with(call(f"{mock.url}/v2/pet/99"))
    assert result.status.value == "faulted"
    error = result.error
    assert error["type"] == COMM
    assert error["status"] == 404
    assert error["title"] == "HTTP 404 Not Found"
    assert "Pet not found" in error["detail"]
    assert error["instance"] == "/do/0/c"


async def test_try_catches_a_status(mock: MockServer) -> None:
    """A `try` filtering on status 503 catches the failing call."""
    body = f"""
        do:
          - t:
              try:
                - c: {{call: http, with: {{method: get, endpoint: '{mock.url}/status/503'}}}}
              catch:
                errors: {{with: {{type: {COMM}, status: 503}}}}
                as: e
                do:
                  - h: {{set: {{caught: '${{ $e.status }}'}}}}
        """
    result, _ = await run_with(body)
    assert result.output == {"caught": 503}


async def test_unreachable_host_is_a_communication_error() -> None:
    """Nothing listening: the communication error with 503."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result, _ = await run_with(call(f"http://127.0.0.1:{port}/x"))
    assert (result.error["type"], result.error["status"]) == (COMM, 503)


async def test_slow_answer_times_out(mock: MockServer) -> None:
    """An answer slower than the configured HTTP timeout is the communication error 504."""
    result, _ = await run_with(call(f"{mock.url}/delay/2"), options=EngineOptions(http_timeout=0.2))
    assert (result.error["type"], result.error["status"]) == (COMM, 504)


async def test_redirect_false_refuses_3xx_and_true_follows(mock: MockServer) -> None:
    """Without `redirect` a 302 is an error; with it the redirect is followed."""
    target = f"{mock.url}/redirect-to?url={mock.url}/v2/pet/1"
    refused, _ = await run_with(call(target))
    followed, _ = await run_with(call(target, "        redirect: true\n"))
    assert refused.error["status"] == 302
    assert followed.output["id"] == 1


async def test_metadata_address_is_denied_by_default() -> None:
    """169.254.169.254 is refused with the authorization error before any connection."""
    result, _ = await run_with(call("http://169.254.169.254/latest/meta-data"))
    assert result.error["status"] == 403
    assert "169.254.169.254" in result.error["detail"]


async def test_redirect_to_a_denied_host_is_blocked(mock: MockServer) -> None:
    """Every redirect hop passes the outbound policy."""
    result, _ = await run_with(call(f"{mock.url}/redirect-to?url=http://169.254.169.254/", "        redirect: true\n"))
    assert result.error["status"] == 403


async def test_deny_and_allow_lists(mock: MockServer) -> None:
    """A denied CIDR or a host outside the allow list is refused; an allowed one is called."""
    denied, _ = await run_with(call(f"{mock.url}/v2/pet/1"), options=EngineOptions(outbound_deny=("127.0.0.0/8",)))
    outside, _ = await run_with(call(f"{mock.url}/v2/pet/1"), options=EngineOptions(outbound_allow=("10.0.0.0/8",)))
    allowed, _ = await run_with(call(f"{mock.url}/v2/pet/1"), options=EngineOptions(outbound_allow=("127.0.0.1",)))
    assert denied.error["status"] == 403
    assert outside.error["status"] == 403
    assert allowed.output["id"] == 1


async def test_response_over_the_limit_is_refused(mock: MockServer) -> None:
    """A body larger than `max_response_bytes` is the communication error 502."""
    result, _ = await run_with(call(f"{mock.url}/huge"), options=EngineOptions(max_response_bytes=1000))
    assert (result.error["status"], result.error["title"]) == (502, "Response too large")


async def test_non_scalar_template_variable_is_an_expression_error(mock: MockServer) -> None:
    """`{petId}` holding an object is the expression error (400)."""
    result, _ = await run_with(call(f"{mock.url}/v2/pet/{{petId}}"), {"petId": {"id": 1}})
    assert result.error["status"] == 400
    assert result.error["type"].endswith("/expression")


async def test_non_http_uri_is_a_configuration_error() -> None:
    """A URI httpx cannot send is the configuration error."""
    result, _ = await run_with(call("ftp://127.0.0.1/file"))
    assert result.error["type"].endswith("/configuration")


def test_asyncapi_protocols_other_than_amqp_and_http_are_refused_at_validation() -> None:
    """An AsyncAPI call over a protocol this runtime does not speak is refused before running, naming it."""
    body = (
        "do:\n  - c:\n      call: asyncapi\n      with:\n        document: {endpoint: 'http://x/doc'}\n"
        "        operation: op\n        protocol: kafka\n        message: {payload: {}}\n"
    )
    issues = issues_of(body)
    assert [i.code for i in issues] == ["unsupported"]
    assert "'kafka'" in issues[0].message
    assert "not supported by this runtime" in issues[0].message
