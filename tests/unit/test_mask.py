"""One masking behaviour for events, errors and logs (executor._mask, used by consumer._logging)."""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import orjson

from consumer._logging import configure_logging, secrets_masked
from executor import MASK, MASKS, Mask


def _log_text(secrets: Any, *messages: str) -> str:
    out = io.StringIO()
    handler = configure_logging(level="INFO", fmt="json", stream=out)
    try:
        with secrets_masked(secrets):
            for message in messages:
                logging.getLogger("tests.mask").info(message)
    finally:
        logging.getLogger().removeHandler(handler)
    return "\n".join(orjson.loads(line)["message"] for line in out.getvalue().splitlines())


def test_an_object_secret_holding_true_does_not_mask_every_true_in_the_logs() -> None:
    """A secret object with a boolean (`{"verify": true}`) leaves the words True/true alone in log lines."""
    text = _log_text({"creds": {"verify": True, "password": "pa55-word"}}, "flag True and true; pw pa55-word")
    assert text == f"flag True and true; pw {MASK}"


def test_logs_and_events_mask_the_same_spellings() -> None:
    """Raw, percent-encoded, JSON-escaped and base64 spellings are masked alike in a log line and in event data."""
    secret = 'to/k+en "9"'
    forms = [
        secret,
        "to%2Fk%2Ben%20%229%22",
        "to%2Fk%2Ben+%229%22",
        'to/k+en \\"9\\"',
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
    ]
    line = " | ".join(forms)
    logged = _log_text({"k": secret}, line)
    scrubbed = Mask({"k": secret}).scrub({"data": [line]})
    assert logged == " | ".join([MASK] * len(forms))
    assert scrubbed == {"data": [logged]}


def test_short_secrets_are_masked_only_as_whole_values() -> None:
    """A 3-character secret masks a value equal to it, not every word containing it."""
    mask = Mask({"pin": "123", "n": 7})
    assert mask.scrub({"a": "123", "b": "x1234", "c": 7, "d": 17, "e": True}) == {
        "a": MASK,
        "b": "x1234",
        "c": MASK,
        "d": 17,
        "e": True,
    }


def test_a_derived_form_added_while_running_is_masked_in_logs_at_once() -> None:
    """A token the runtime derives after the run started (an HTTP Basic token) is masked from then on."""
    mask = Mask({"pw": "hunter2-pw"})
    token = base64.b64encode(b"bob:hunter2-pw").decode()
    with MASKS.active(mask):
        assert MASKS.text(f"Basic {token}") == f"Basic {token}"
        mask.add(token)
        assert MASKS.text(f"Basic {token}") == f"Basic {MASK}"
        assert mask.scrub({"h": f"Basic {token}"}) == {"h": f"Basic {MASK}"}
    assert MASKS.text("hunter2-pw") == "hunter2-pw"  # no longer running: nothing to mask


def test_a_secret_containing_another_is_masked_whole_across_executions() -> None:
    """Two running executions whose secrets overlap: the longer one is masked whole, no tail left."""
    short, long = Mask(["abcd"]), Mask(["abcd-efgh-long"])
    with MASKS.active(short), MASKS.active(long):
        assert MASKS.text("x abcd-efgh-long y abcd") == f"x {MASK} y {MASK}"
