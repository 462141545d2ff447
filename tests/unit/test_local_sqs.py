"""SQS semantics of the local hot-path stand-in, driven in process (no sockets)."""

from __future__ import annotations

import json
import time

import pytest

from junction_local.aws.sqs import SqsError, SqsService, md5_of_attributes


@pytest.fixture
def sqs() -> SqsService:
    service = SqsService("http://127.0.0.1:1")
    service.CreateQueue({"QueueName": "dlq"})
    redrive = json.dumps({"deadLetterTargetArn": "arn:aws:sqs:eu-central-1:000000000000:dlq", "maxReceiveCount": 2})
    service.CreateQueue({"QueueName": "q", "Attributes": {"VisibilityTimeout": "30", "RedrivePolicy": redrive}})
    return service


def receive(sqs: SqsService, queue: str = "q", **extra: object) -> list[dict[str, object]]:
    messages: list[dict[str, object]] = sqs.ReceiveMessage(
        {"QueueUrl": queue, "MaxNumberOfMessages": 10, "AttributeNames": ["All"], **extra}
    ).get("Messages", [])
    return messages


def test_in_flight_messages_are_hidden_until_their_visibility_ends(sqs: SqsService) -> None:
    sqs.SendMessage({"QueueUrl": "q", "MessageBody": "a"})
    [first] = receive(sqs, VisibilityTimeout=1)
    assert receive(sqs) == []
    time.sleep(1.1)
    [again] = receive(sqs)
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"  # type: ignore[index]


def test_stale_receipt_handles_cannot_delete(sqs: SqsService) -> None:
    sqs.SendMessage({"QueueUrl": "q", "MessageBody": "a"})
    [first] = receive(sqs, VisibilityTimeout=1)
    time.sleep(1.1)
    [second] = receive(sqs)
    with pytest.raises(SqsError, match="expired"):
        sqs.DeleteMessage({"QueueUrl": "q", "ReceiptHandle": first["ReceiptHandle"]})
    sqs.DeleteMessage({"QueueUrl": "q", "ReceiptHandle": second["ReceiptHandle"]})
    assert receive(sqs) == []


def test_redrive_after_max_receive_count(sqs: SqsService) -> None:
    sqs.SendMessage({"QueueUrl": "q", "MessageBody": "poison"})
    for _ in range(2):
        [message] = receive(sqs)
        sqs.ChangeMessageVisibility(
            {"QueueUrl": "q", "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
        )
    assert receive(sqs) == []  # the third receive moves it instead
    [dead] = receive(sqs, "dlq")
    assert dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"].endswith(":q")  # type: ignore[index]


def test_long_poll_wakes_on_send(sqs: SqsService) -> None:
    import threading

    threading.Timer(0.2, lambda: sqs.SendMessage({"QueueUrl": "q", "MessageBody": "late"})).start()
    started = time.monotonic()
    [message] = receive(sqs, WaitTimeSeconds=5)
    assert message["Body"] == "late" and time.monotonic() - started < 2


def test_fifo_groups_and_deduplication() -> None:
    sqs = SqsService("http://127.0.0.1:1")
    sqs.CreateQueue({"QueueName": "f.fifo", "Attributes": {"FifoQueue": "true"}})
    for body, group, dedup in [("a1", "a", "1"), ("a2", "a", "2"), ("b1", "b", "3"), ("a1 again", "a", "1")]:
        sqs.SendMessage(
            {"QueueUrl": "f.fifo", "MessageBody": body, "MessageGroupId": group, "MessageDeduplicationId": dedup}
        )
    first = receive(sqs, "f.fifo", MaxNumberOfMessages=1)
    assert [m["Body"] for m in first] == ["a1"]
    assert [m["Body"] for m in receive(sqs, "f.fifo")] == ["b1"]  # group a is held while a1 is in flight
    sqs.DeleteMessage({"QueueUrl": "f.fifo", "ReceiptHandle": first[0]["ReceiptHandle"]})
    assert [m["Body"] for m in receive(sqs, "f.fifo")] == ["a2"]  # and the duplicate of a1 was dropped


def test_message_move_task_returns_dead_letters_to_their_queue(sqs: SqsService) -> None:
    sqs.SendMessage({"QueueUrl": "dlq", "MessageBody": "x"})
    sqs.StartMessageMoveTask({"SourceArn": "arn:aws:sqs:eu-central-1:000000000000:dlq"})
    deadline = time.monotonic() + 5
    while not receive(sqs) and time.monotonic() < deadline:
        time.sleep(0.05)
    [task] = sqs.ListMessageMoveTasks({"SourceArn": "arn:aws:sqs:eu-central-1:000000000000:dlq"})["Results"]
    assert task["ApproximateNumberOfMessagesMoved"] == 1


def test_attribute_md5_agrees_with_moto() -> None:
    from moto.sqs.models import Message

    attributes = {
        "junction-attempts": {"DataType": "Number", "StringValue": "3"},
        "junction-reason": {"DataType": "String", "StringValue": "target_rejected"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    reference = Message("id", "body")
    reference.message_attributes = attributes
    assert md5_of_attributes(attributes) == reference.attribute_md5
