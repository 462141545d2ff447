"""Component fixtures: moto server on 127.0.0.1 standing in for AWS, the ERP stand-in, and a
pipeline that runs the real ingress and processor code against them."""

from __future__ import annotations

import functools
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend
from moto.server import ThreadedMotoServer

from junction_local.aws.server import LocalAws
from junction_local.standins.erp import ErpStandIn
from tests.component.harness import Pipeline

# DynamoDB applies each write, its condition included, atomically; moto server evaluates a
# condition and then writes, with nothing between two requests on its threads: two conditional
# UpdateItems on one key can both pass (measured: 1 race in 200 with 4 writers). Without this
# lock, the idempotency claim and the rate budgets look broken on moto when they are not.
_DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_ATOMIC = threading.RLock()


def _serialised(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def atomic(*args: Any, **kwargs: Any) -> Any:
        with _ATOMIC:
            return write(*args, **kwargs)

    atomic.__dict__["serialised"] = True
    return atomic


def make_moto_writes_atomic() -> None:
    for name in _DYNAMODB_WRITES:
        write = getattr(DynamoDBBackend, name)
        if not getattr(write, "serialised", False):
            setattr(DynamoDBBackend, name, _serialised(write))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    make_moto_writes_atomic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(params=["moto", "local-hot-path"])
def aws(request: pytest.FixtureRequest, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean AWS stand-in for each test; every client (boto3 and the lean one) points at it.

    Each test runs twice: all services on moto, then SQS and DynamoDB on the local runtime's own
    stand-in (junction_local.aws), which must behave the same in every case.
    """
    reset = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10) as response:
        assert response.status == 200
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    if request.param == "moto":
        yield moto_endpoint
        return
    with LocalAws() as local:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", local.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local.url)
        yield local.url


@pytest.fixture
def erp() -> Iterator[ErpStandIn]:
    with ErpStandIn() as standin:
        yield standin


@pytest.fixture
def pipeline(aws: str, erp: ErpStandIn) -> Iterator[Pipeline]:
    p = Pipeline.start(erp)
    yield p
    p.close()
