"""The HTTP sink: CloudEvents over HTTP in structured mode, the binding the CloudEvents spec recommends.

A batch of several events is one POST of `application/cloudevents-batch+json` (or, with `batch=False`, one
`application/cloudevents+json` POST per event, for receivers without batch support). 2xx is delivered;
408, 429 and 5xx (and connection trouble) are retried, honouring `Retry-After`; any other status, redirects
included, is a refusal for good. The API key, when given, travels in the configured headers only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime

import httpx

from callbacks._errors import SinkRefusedError, SinkUnavailableError
from callbacks._event import CloudEvent
from callbacks._wire import BATCH, STRUCTURED, json_batch, json_event

_TRANSIENT_STATUS = frozenset({408, 429})
_TRANSPORT_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


class HttpSink:
    """POSTs events to a CloudEvents HTTP endpoint through one shared `httpx.AsyncClient`.

    Args:
        url: Endpoint receiving the POSTs.
        headers: Extra headers on every request, e.g. `{"authorization": "Bearer ..."}`; never logged.
        timeout: Seconds per request.
        batch: Send several events as one batch request (True) or one request each (False).
        client: A client to use instead of creating one (the sink then closes it all the same).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        batch: bool = True,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._headers = dict(headers or {})
        self._batch = batch
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"HttpSink({self.url!r}, batch={self._batch})"

    async def send(self, batch: Sequence[CloudEvent]) -> None:
        """POSTs the batch (one request, or one per event in order)."""
        if self._batch and len(batch) > 1:
            await self._post(json_batch(batch), BATCH)
            return
        for event in batch:
            await self._post(json_event(event), STRUCTURED)

    async def _post(self, body: bytes, content_type: str) -> None:
        headers = {**self._headers, "content-type": content_type}
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except _TRANSPORT_TRANSIENT as exc:
            raise SinkUnavailableError(type(exc).__name__) from exc
        _check(response)

    async def close(self) -> None:
        """Closes the client and its connections."""
        await self._client.aclose()


def _check(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    code = f"HTTP {status}"
    if status in _TRANSIENT_STATUS or status >= 500:
        raise SinkUnavailableError(code, retry_after=retry_after(response.headers.get("retry-after")))
    raise SinkRefusedError(code)


def retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())
