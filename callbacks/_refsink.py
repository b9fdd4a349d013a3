"""The reference sink: a control-plane stand-in for local development, the compose stack and the tests.

It accepts the gRPC sink's `ProgressSink/Report` calls and the HTTP sink's structured / batch POSTs, checks each
event is a CloudEvent (a malformed one refuses the call: INVALID_ARGUMENT / 400), deduplicates by event id,
checks that each execution's events arrive in (attempt, sequence) order and reports those that do not, and
writes every new event as one JSON line (stdout or a file). Its state survives `stop()` / `start()`, which
rebind the same ports, so a test can take the "control plane" down and bring it back.

For exercising senders it can also require an API key (UNAUTHENTICATED / 401), fail the first N calls
(UNAVAILABLE / 503, with an optional retry-after) and answer slowly.
The command line (`workflow-runner sink`) is in `callbacks._refsink_cli`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import grpc.aio
import orjson

from callbacks._proto.workflow_runner.v1 import progress_pb2 as pb
from callbacks._refsink_http import HttpServer, Request, Response
from callbacks._wire import BATCH, STRUCTURED, invalid_reason, proto_to_dict

logger = logging.getLogger("callbacks.refsink")
SERVICE = "workflow_runner.v1.ProgressSink"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Refusal:
    """Why a call is turned down, in both transports' terms."""

    grpc_code: grpc.StatusCode
    http_status: int
    message: str
    retry_after: float | None = None


class _Ledger:
    """Everything received: unique events in arrival order, duplicates, order violations."""

    def __init__(self, out: IO[bytes] | None) -> None:
        self.events: list[dict[str, Any]] = []
        self.duplicates = 0
        self.out_of_order: list[str] = []
        self._seen: set[str] = set()
        self._last: dict[str, tuple[int, int]] = {}
        self._out = out

    def record(self, events: list[dict[str, Any]]) -> tuple[int, int]:
        """Stores new events; returns (accepted, duplicates)."""
        fresh = [event for event in events if self._is_new(event)]
        for event in fresh:
            self._check_order(event)
            self.events.append(event)
        if self._out is not None and fresh:
            self._out.write(b"".join(orjson.dumps(event) + b"\n" for event in fresh))
            self._out.flush()
        return len(fresh), len(events) - len(fresh)

    def _is_new(self, event: dict[str, Any]) -> bool:
        if event["id"] in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(event["id"])
        return True

    def _check_order(self, event: dict[str, Any]) -> None:
        execution = str(event.get("executionid") or event.get("subject") or "")
        key = (_as_int(event.get("attempt")), _as_int(event.get("sequence")))
        last = self._last.get(execution)
        if last is not None and key < last:
            problem = f"execution {execution}: attempt {key[0]} sequence {key[1]} after sequence {last[1]}"
            self.out_of_order.append(problem)
            logger.warning("out of order: %s", problem)
        self._last[execution] = max(key, last or key)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class ReferenceSink:
    """The reference sink's servers and ledger; see the module docstring.

    Args:
        host: Interface to bind.
        grpc_port: gRPC port (0: any free port; `grpc_port` tells which after `start`). None: no gRPC.
        http_port: HTTP port, likewise. None: no HTTP.
        out: Where new events are written as JSON lines: a path (appended to), a binary stream, or None.
        api_key: When set, calls must carry `authorization: Bearer <api_key>`.
        fail_first: Refuse this many calls as unavailable before accepting any (tests and chaos drills).
        retry_after: Seconds to suggest in those refusals.
        delay: Seconds to wait before answering each accepted call.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        grpc_port: int | None = 0,
        http_port: int | None = 0,
        out: str | Path | IO[bytes] | None = None,
        api_key: str | None = None,
        fail_first: int = 0,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.fail_first = fail_first
        self.retry_after = retry_after
        self.delay = delay
        self.api_key = api_key
        self.calls = 0
        self._owned_out = open(out, "ab") if isinstance(out, str | Path) else None  # noqa: SIM115 closed in close()
        self._ledger = _Ledger(self._owned_out or (out if not isinstance(out, str | Path) else None))
        self._grpc: grpc.aio.Server | None = None
        self._http: HttpServer | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        """Unique events received, in arrival order (JSON event format)."""
        return self._ledger.events

    @property
    def duplicates(self) -> int:
        """Events received again after the first time."""
        return self._ledger.duplicates

    @property
    def out_of_order(self) -> list[str]:
        """Descriptions of events that arrived after a later event of the same execution."""
        return self._ledger.out_of_order

    @property
    def grpc_target(self) -> str:
        """`host:port` for `GrpcSink`."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """URL for `HttpSink`."""
        return f"http://{self.host}:{self.http_port}/events"

    def events_of(self, execution_id: str) -> list[dict[str, Any]]:
        """Unique events of one execution, in arrival order."""
        return [event for event in self.events if event.get("executionid") == execution_id]

    async def start(self) -> None:
        """Starts both servers (on the ports of the previous start, if any); neither runs if one cannot bind."""
        try:
            if self.grpc_port is not None and self._grpc is None:
                await self._start_grpc(self.grpc_port)
            if self.http_port is not None and self._http is None:
                http = HttpServer(self._on_http, self.host, self.http_port)
                await http.start()
                self._http, self.http_port = http, http.port
        except BaseException:
            await self.stop()
            raise

    async def _start_grpc(self, port: int) -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            self._on_report,
            request_deserializer=pb.ReportRequest.FromString,
            response_serializer=pb.ReportResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Report": handler}),))
        self._grpc = server  # from here on, stop() releases it even if binding fails
        self.grpc_port = server.add_insecure_port(f"{self.host}:{port}")
        await server.start()

    async def stop(self, grace: float | None = None) -> None:
        """Stops both servers, dropping calls in progress unless `grace` lets them finish; keeps the ledger."""
        if self._grpc is not None:
            server, self._grpc = self._grpc, None
            await server.stop(grace)
        if self._http is not None:
            http, self._http = self._http, None
            await http.stop()

    async def close(self) -> None:
        """Stops and closes the output file it opened."""
        await self.stop()
        if self._owned_out is not None:
            self._owned_out.close()

    def _admit(self, authorization: str | None) -> _Refusal | None:
        self.calls += 1
        if self.api_key and not hmac.compare_digest(authorization or "", f"Bearer {self.api_key}"):
            return _Refusal(grpc_code=grpc.StatusCode.UNAUTHENTICATED, http_status=401, message="bad api key")
        if self.calls <= self.fail_first:
            return _Refusal(
                grpc_code=grpc.StatusCode.UNAVAILABLE,
                http_status=503,
                message=f"failing call {self.calls} of the first {self.fail_first}",
                retry_after=self.retry_after,
            )
        return None

    async def _ingest(self, events: list[Any]) -> tuple[int, int] | _Refusal:
        for event in events:
            reason = invalid_reason(event)
            if reason is not None:
                where = event.get("id", "?") if isinstance(event, dict) else "?"
                return _Refusal(
                    grpc_code=grpc.StatusCode.INVALID_ARGUMENT, http_status=400, message=f"event {where}: {reason}"
                )
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._ledger.record(events)

    async def _on_report(
        self, request: pb.ReportRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportResponse:
        authorization = dict(context.invocation_metadata() or ()).get("authorization")
        verdict = self._admit(authorization if isinstance(authorization, str) else None)
        if verdict is None:
            outcome = await self._ingest([proto_to_dict(event) for event in request.events])
            if not isinstance(outcome, _Refusal):
                return pb.ReportResponse(accepted=outcome[0], duplicates=outcome[1])
            verdict = outcome
        trailers = (("retry-after", f"{verdict.retry_after:g}"),) if verdict.retry_after is not None else ()
        await context.abort(verdict.grpc_code, verdict.message, trailing_metadata=trailers)
        raise AssertionError("ServicerContext.abort returns only by raising")

    async def _on_http(self, request: Request) -> Response:
        if request.method == "GET" and request.path == "/healthz":
            return _json_response(200, {"status": "ok"})
        if request.method == "GET" and request.path == "/events":
            return _json_response(200, self.events)
        if request.method != "POST":
            return _json_response(405, {"error": "POST CloudEvents here"})
        verdict = self._admit(request.headers.get("authorization"))
        if verdict is None:
            outcome = await self._ingest_http(request)
            if not isinstance(outcome, _Refusal):
                return _json_response(200, {"accepted": outcome[0], "duplicates": outcome[1]})
            verdict = outcome
        response = _json_response(verdict.http_status, {"error": verdict.message})
        if verdict.retry_after is not None:
            response.headers["retry-after"] = f"{verdict.retry_after:g}"
        return response

    async def _ingest_http(self, request: Request) -> tuple[int, int] | _Refusal:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in {STRUCTURED, BATCH}:
            return _Refusal(
                grpc_code=grpc.StatusCode.INVALID_ARGUMENT,
                http_status=415,
                message=f"content-type must be {STRUCTURED} or {BATCH}",
            )
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return _Refusal(grpc_code=grpc.StatusCode.INVALID_ARGUMENT, http_status=400, message="body is not JSON")
        if content_type == BATCH and not isinstance(body, list):
            return _Refusal(grpc_code=grpc.StatusCode.INVALID_ARGUMENT, http_status=400, message="batch not a list")
        return await self._ingest(body if content_type == BATCH else [body])


def _json_response(status: int, body: Any) -> Response:
    return Response(status=status, body=orjson.dumps(body))
