"""The lean AWS client: SigV4 must match botocore's, byte for byte; DynamoDB values round-trip."""

from __future__ import annotations

import calendar
import time
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given
from hypothesis import strategies as st

from shared.aws import AwsError, Credentials, from_ddb, item_from_ddb, item_to_ddb, sign_v4, to_ddb


@pytest.mark.parametrize("token", [None, "session-token-value"])
@pytest.mark.parametrize(
    ("service", "url", "target"),
    [
        ("sqs", "https://sqs.eu-central-1.amazonaws.com/", "AmazonSQS.SendMessage"),
        ("dynamodb", "https://dynamodb.eu-central-1.amazonaws.com/", "DynamoDB_20120810.PutItem"),
        ("secretsmanager", "http://127.0.0.1:5000/", "secretsmanager.GetSecretValue"),
    ],
)
def test_signature_matches_botocore(service: str, url: str, target: str, token: str | None) -> None:
    body = b'{"QueueUrl": "https://x", "MessageBody": "zaz\\u00f3\\u0142\\u0107  two  spaces"}'
    headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target}
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    boto_creds = BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    SigV4Auth(boto_creds, service, "eu-central-1").add_auth(request)
    signed_at = calendar.timegm(time.strptime(request.context["timestamp"], "%Y%m%dT%H%M%SZ"))
    ours = sign_v4(
        method="POST",
        url=url,
        headers=headers,
        body=body,
        service=service,
        region="eu-central-1",
        credentials=Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        now=signed_at,
    )
    assert ours["Authorization"] == request.headers["Authorization"]


def test_missing_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(AwsError, match="NoCredentials"):
        Credentials.from_env()


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (500, "InternalError", True),
        (400, "ThrottlingException", True),
        (400, "ValidationException", False),
        (400, "ConditionalCheckFailedException", False),
        (0, "ConnectionError", True),
    ],
)
def test_retryable_errors(status: int, code: str, retryable: bool) -> None:
    assert AwsError("dynamodb", "PutItem", status, code, "m").retryable is retryable


ddb_values: Any = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.text(max_size=20),
        st.integers(min_value=-(10**12), max_value=10**12),
        st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9),
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@given(value=ddb_values)
def test_dynamodb_values_round_trip(value: Any) -> None:
    assert from_ddb(to_ddb(value)) == value  # numbers come back as int or Decimal, never float


def test_items_round_trip() -> None:
    item = {"id": "k", "n": 3, "ok": True, "m": {"a": "b"}, "l": ["x", 1]}
    assert item_from_ddb(item_to_ddb(item)) == item
