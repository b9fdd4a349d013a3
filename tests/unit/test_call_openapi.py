"""`call: openapi` against the local petstore: Swagger 2.0 and OpenAPI 3 documents, parameter routing, errors."""

from __future__ import annotations

import json
from pathlib import Path

from executor import EngineOptions
from tests.fixtures import petstore
from tests.fixtures.http_mock import MockServer
from tests.fixtures.runner import run_with


def operation(document: str, operation_id: str, parameters: str = "{}", extra: str = "") -> str:
    """A one-task document calling `operation_id` of the document at `document`."""
    return f"""
        do:
          - c:
              call: openapi
              with:
                document: {{endpoint: '{document}'}}
                operationId: {operation_id}
                parameters: {parameters}
                {extra}
        """


async def test_find_by_status_from_a_swagger_json_document(mock: MockServer) -> None:
    """A query parameter is routed to the query string; the JSON answer is the output."""
    result, _ = await run_with(
        operation(f"{mock.url}/v2/swagger.json", "findPetsByStatus", "{status: '${ .status }'}"), {"status": "sold"}
    )
    assert [p["name"] for p in result.output] == ["Rex"]


async def test_array_query_parameter_repeats(mock: MockServer) -> None:
    """`collectionFormat: multi` sends one `status=` per value."""
    result, _ = await run_with(
        operation(f"{mock.url}/v2/swagger.json", "findPetsByStatus", '{status: \'${ ["sold", "available"] }\'}')
    )
    assert sorted(p["id"] for p in result.output) == [1, 2, 3]


async def test_path_parameter_from_a_yaml_document_with_response_output(mock: MockServer) -> None:
    """A YAML document works too; `output: response` has the spec's shape."""
    result, _ = await run_with(operation(f"{mock.url}/v2/swagger.yaml", "getPetById", "{petId: 2}", "output: response"))
    assert result.output["statusCode"] == 200
    assert result.output["request"]["uri"] == f"{mock.url}/v2/pet/2"
    assert result.output["request"]["headers"]["Accept"] == "application/json"
    assert result.output["content"]["name"] == "Milou"


async def test_body_parameter_by_name_and_from_leftovers(mock: MockServer) -> None:
    """The Swagger body parameter takes `parameters.body`, or else the parameters no operation slot took."""
    named, _ = await run_with(operation(f"{mock.url}/v2/swagger.json", "addPet", "{body: {name: Rex}}"))
    leftover, _ = await run_with(operation(f"{mock.url}/v2/swagger.json", "addPet", "{name: Rex, status: sold}"))
    assert named.output["created"] == {"name": "Rex"}
    assert leftover.output["created"] == {"name": "Rex", "status": "sold"}
    assert named.output["contentType"] == "application/json"


async def test_form_and_header_parameters(mock: MockServer) -> None:
    """`formData` parameters are form-encoded; `header` ones become headers."""
    form, _ = await run_with(
        operation(f"{mock.url}/v2/swagger.json", "updatePetWithForm", "{petId: 1, name: Rex, status: sold}")
    )
    header, _ = await run_with(operation(f"{mock.url}/v2/swagger.json", "deletePet", "{petId: 3, api_key: k-1}"))
    assert form.output["form"] == {"name": "Rex", "status": "sold"}
    assert header.output == {"deleted": 3, "api_key": "k-1"}


async def test_openapi3_servers_refs_and_request_body(mock: MockServer) -> None:
    """OpenAPI 3: server variables, path-level `$ref` parameters and `requestBody` are honoured."""
    pet, _ = await run_with(operation(f"{mock.url}/v3/openapi.yaml", "getPetById", "{petId: 1}"))
    added, _ = await run_with(operation(f"{mock.url}/v3/openapi.yaml", "addPet", "{body: {name: Kit}}"))
    assert pet.output["name"] == "doggie"
    assert added.output["created"] == {"name": "Kit"}


async def test_document_is_loaded_once_per_executor(mock: MockServer) -> None:
    """Two calls of one document in a run download it once."""
    url = f"{mock.url}/v2/swagger.json"
    body = f"""
        do:
          - a: {{call: openapi, with: {{document: {{endpoint: '{url}'}}, operationId: getPetById, parameters: {{petId: 1}}}}}}
          - b: {{call: openapi, with: {{document: {{endpoint: '{url}'}}, operationId: getPetById, parameters: {{petId: 2}}}}}}
        """
    before = sum(1 for r in mock.state["requests"] if r[1] == "/v2/swagger.json")
    result, _ = await run_with(body)
    after = sum(1 for r in mock.state["requests"] if r[1] == "/v2/swagger.json")
    assert result.output["id"] == 2
    assert after - before == 1


async def test_unknown_operation_is_a_configuration_error(mock: MockServer) -> None:
    """An operationId the document lacks faults with the configuration error (400)."""
    result, _ = await run_with(operation(f"{mock.url}/v2/swagger.json", "getPetByName"))
    assert result.error["type"].endswith("/configuration")
    assert "getPetByName" in result.error["detail"]


async def test_missing_required_parameter_is_a_configuration_error(mock: MockServer) -> None:
    """A required parameter left out is reported before any request."""
    result, _ = await run_with(operation(f"{mock.url}/v2/swagger.json", "getPetById"))
    assert result.error["status"] == 400
    assert "petId" in result.error["detail"]


async def test_operation_error_status_and_missing_document(mock: MockServer) -> None:
    """The operation's 404 and a document that is not there are both communication errors with 404."""
    missing_pet, _ = await run_with(operation(f"{mock.url}/v2/swagger.json", "getPetById", "{petId: 42}"))
    missing_doc, _ = await run_with(operation(f"{mock.url}/v2/nothing.json", "getPetById", "{petId: 1}"))
    assert missing_pet.error["status"] == 404
    assert missing_doc.error["status"] == 404


async def test_local_document_needs_a_resource_root(mock: MockServer, tmp_path: Path) -> None:
    """A `file://` document is refused by default and read inside a configured resource root."""
    path = tmp_path / "petstore.json"
    path.write_text(json.dumps(petstore.swagger(mock.host)))
    body = operation(path.as_uri(), "getPetById", "{petId: 1}")
    refused, _ = await run_with(body)
    allowed, _ = await run_with(body, options=EngineOptions(resource_roots=(str(tmp_path),)))
    assert refused.error["status"] == 403
    assert allowed.output["id"] == 1
