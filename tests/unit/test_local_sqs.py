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


# -- what SQS refuses: characters outside its set, messages over MaximumMessageSize --------------
REFUSED = ["\ufffe", "\uffff", "\ud800", "\udfff", "\x00", "\x08", "\x0b", "\x1f"]
ALLOWED = ["\t", "\n", "\r", " ", "\ud7ff", "\ue000", "\ufffd", "\U00010000", "\U0010ffff", "zażółć 🎉"]


@pytest.mark.parametrize("character", REFUSED, ids=lambda c: f"U+{ord(c):04X}")
def test_a_body_with_a_character_sqs_refuses_is_refused(sqs: SqsService, character: str) -> None:
    with pytest.raises(SqsError) as refused:
        sqs.SendMessage({"QueueUrl": "q", "MessageBody": f'{{"note":"a{character}b"}}'})
    assert refused.value.code == "InvalidMessageContents"
    assert f"#x{ord(character):X}" in refused.value.message
    assert receive(sqs) == []


@pytest.mark.parametrize("character", ALLOWED, ids=lambda c: f"U+{ord(c[0]):04X}")
def test_every_character_sqs_allows_is_kept(sqs: SqsService, character: str) -> None:
    sqs.SendMessage({"QueueUrl": "q", "MessageBody": f"a{character}b"})
    [message] = receive(sqs)
    assert message["Body"] == f"a{character}b"


def test_a_batch_refuses_only_its_entries_with_refused_characters(sqs: SqsService) -> None:
    answer = sqs.SendMessageBatch(
        {
            "QueueUrl": "q",
            "Entries": [
                {"Id": "good", "MessageBody": "fine"},
                {"Id": "bad", "MessageBody": "not \uffff fine"},
            ],
        }
    )
    assert [e["Id"] for e in answer["Successful"]] == ["good"]
    [failed] = answer["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == ("bad", "InvalidMessageContents", True)
    assert [m["Body"] for m in receive(sqs)] == ["fine"]


def test_the_envelope_escapes_what_sqs_refuses_so_the_stand_in_accepts_it(sqs: SqsService) -> None:
    """What the ingress enqueues (shared.envelope.sqs_safe) passes; the raw text would not."""
    from shared.envelope import sqs_safe

    raw = json.dumps({"note": "\ufffe \uffff \ud800"}, ensure_ascii=False)
    with pytest.raises(SqsError, match="#xFFFE"):
        sqs.SendMessage({"QueueUrl": "q", "MessageBody": raw})
    sqs.SendMessage({"QueueUrl": "q", "MessageBody": sqs_safe(raw)})
    [message] = receive(sqs)
    assert json.loads(str(message["Body"])) == json.loads(raw)


KEY = {"junction-idempotency-key": {"DataType": "String", "StringValue": "shopify-orders:d-1"}}
KEY_BYTES = len("junction-idempotency-key") + len("String") + len("shopify-orders:d-1")


def test_the_size_counts_the_body_and_the_attributes_against_the_default_limit(sqs: SqsService) -> None:
    """256 KiB by default, body and every attribute's name, type and value together, in bytes."""
    from junction_local.aws.sqs import DEFAULT_MAXIMUM_MESSAGE_SIZE

    assert DEFAULT_MAXIMUM_MESSAGE_SIZE == 262_144
    fits = "x" * (262_144 - KEY_BYTES)
    sqs.SendMessage({"QueueUrl": "q", "MessageBody": fits, "MessageAttributes": KEY})
    with pytest.raises(SqsError) as refused:
        sqs.SendMessage({"QueueUrl": "q", "MessageBody": fits + "x", "MessageAttributes": KEY})
    assert refused.value.code == "InvalidParameterValue"
    assert "shorter than 262144 bytes" in refused.value.message
    sqs.SendMessage({"QueueUrl": "q", "MessageBody": fits + "x"})  # the same body without the attribute fits
    assert len(receive(sqs)) == 2


def test_the_size_is_in_utf8_bytes_not_characters(sqs: SqsService) -> None:
    two_bytes = "ż" * (262_144 // 2)  # 131,072 characters, 262,144 bytes: exactly the limit
    sqs.SendMessage({"QueueUrl": "q", "MessageBody": two_bytes})
    with pytest.raises(SqsError, match="shorter than 262144 bytes"):
        sqs.SendMessage({"QueueUrl": "q", "MessageBody": two_bytes + "x"})


def test_the_queues_own_maximum_message_size_applies(sqs: SqsService) -> None:
    sqs.CreateQueue({"QueueName": "small", "Attributes": {"MaximumMessageSize": "1024"}})
    sqs.SendMessage({"QueueUrl": "small", "MessageBody": "x" * 1024})
    with pytest.raises(SqsError, match="shorter than 1024 bytes"):
        sqs.SendMessage({"QueueUrl": "small", "MessageBody": "x" * 1000, "MessageAttributes": KEY})
    sqs.SetQueueAttributes({"QueueUrl": "small", "Attributes": {"MaximumMessageSize": "2048"}})
    sqs.SendMessage({"QueueUrl": "small", "MessageBody": "x" * 1000, "MessageAttributes": KEY})


def test_a_binary_attribute_counts_its_bytes(sqs: SqsService) -> None:
    import base64

    sqs.CreateQueue({"QueueName": "small", "Attributes": {"MaximumMessageSize": "1024"}})
    blob = {"b": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\x00" * 100).decode()}}
    body = "x" * (1024 - len("b") - len("Binary") - 100)
    sqs.SendMessage({"QueueUrl": "small", "MessageBody": body, "MessageAttributes": blob})
    with pytest.raises(SqsError, match="shorter than 1024 bytes"):
        sqs.SendMessage({"QueueUrl": "small", "MessageBody": body + "x", "MessageAttributes": blob})


def test_a_batch_refuses_only_its_oversized_entries(sqs: SqsService) -> None:
    answer = sqs.SendMessageBatch(
        {
            "QueueUrl": "q",
            "Entries": [
                {"Id": "small", "MessageBody": "x"},
                {"Id": "big", "MessageBody": "x" * (262_144 - KEY_BYTES + 1), "MessageAttributes": KEY},
            ],
        }
    )
    assert [e["Id"] for e in answer["Successful"]] == ["small"]
    assert [(f["Id"], f["Code"]) for f in answer["Failed"]] == [("big", "InvalidParameterValue")]


def test_moto_checks_neither_so_only_this_stand_in_catches_them() -> None:
    """Why these checks live here: moto (which the component tests also run on) accepts both a
    refused character and a 256 KiB body plus attributes. Fails once moto checks them too."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("sqs", region_name="eu-central-1")
        url = client.create_queue(QueueName="q", Attributes={"MaximumMessageSize": "262144"})["QueueUrl"]
        client.send_message(QueueUrl=url, MessageBody="not \uffff fine")
        client.send_message(QueueUrl=url, MessageBody="x" * 262_144, MessageAttributes=KEY)  # type: ignore[arg-type]
        got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(len(m["Body"]) for m in got) == [10, 262_144]
