"""Standard Webhooks signatures, verified by the standardwebhooks package."""

from __future__ import annotations

import base64
import datetime as dt
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from poller.delivery import signing

SECRET_A = "whsec_" + base64.b64encode(b"a" * 32).decode()
SECRET_B = "whsec_" + base64.b64encode(b"b" * 24).decode()
BODY = b'{"id":"evt_1","type":"batch_job.succeeded"}'


def verify(secret: str, headers: dict[str, str], body: bytes = BODY) -> object:
    return Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("secret", [SECRET_A, SECRET_B])
def test_signature_verifies(secret: str) -> None:
    """A signed body verifies with the same secret."""
    headers = signing.headers([secret], "evt_1", int(time.time()), BODY)
    assert verify(secret, headers) == {"id": "evt_1", "type": "batch_job.succeeded"}


def test_rotation_signs_with_every_secret() -> None:
    """With two secrets both signatures are present and each verifies on its own."""
    headers = signing.headers([SECRET_A, SECRET_B], "evt_1", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify(SECRET_A, headers)
    verify(SECRET_B, headers)


def test_tampered_body_fails() -> None:
    """A body changed after signing does not verify."""
    headers = signing.headers([SECRET_A], "evt_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET_A, headers, BODY.replace(b"succeeded", b"failed"))


def test_known_vector() -> None:
    """The signature matches the Standard Webhooks reference computation."""
    moment = dt.datetime.fromtimestamp(1700000000, tz=dt.UTC)
    expected = Webhook(SECRET_A).sign("evt_1", moment, BODY.decode())
    assert signing.sign(SECRET_A, "evt_1", 1700000000, BODY) == expected


def test_unsigned_without_secrets() -> None:
    """Without secrets only id and timestamp headers are sent."""
    assert set(signing.headers([], "evt_1", 1, BODY)) == {"webhook-id", "webhook-timestamp"}


@pytest.mark.parametrize("bad", ["whsec_***not-base64***", "whsec_"])
def test_bad_secret_message_does_not_echo_it(bad: str) -> None:
    """An invalid secret is refused without repeating it."""
    with pytest.raises(ValueError) as info:
        signing.decode_secret(bad)
    assert bad not in str(info.value)
