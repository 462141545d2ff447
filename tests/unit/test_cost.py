"""The cost arithmetic: counts times the one price table, exact decimals, per million events."""

from __future__ import annotations

from decimal import Decimal

from ops import cost, prices


def test_each_count_is_billed_at_its_price() -> None:
    usage = cost.Usage(
        events=Decimal(2_000_000),
        lambda_requests=Decimal(1_000_000),
        sqs_requests=Decimal(3_000_000),
        dynamodb_write_units=Decimal(4_000_000),
        apigateway_requests=Decimal(2_000_000),
        secrets_calls=Decimal(20_000),
    )
    c = cost.cost(usage)
    assert c.lines["lambda_requests"] == Decimal("0.20")
    assert c.lines["sqs_requests"] == Decimal("1.20")
    assert c.lines["dynamodb_write_units"] == Decimal("3.0500")
    assert c.lines["apigateway_requests"] == Decimal("7.40")
    assert c.lines["secrets_calls"] == Decimal("0.10")
    assert c.total == Decimal("11.95")
    assert c.per_million == Decimal("5.975")  # two million events


def test_gb_seconds_are_memory_in_gb_times_seconds() -> None:
    assert cost.gb_seconds(512, 1000) == Decimal("0.5")
    assert cost.gb_seconds(1024, 250) == Decimal("0.25")
    c = cost.cost(cost.Usage(lambda_gb_seconds=Decimal(1_000_000)))
    assert c.lines["lambda_gb_seconds"] == Decimal("13.3334")  # Arm


def test_no_events_has_no_per_million_figure() -> None:
    assert cost.cost(cost.Usage(lambda_requests=Decimal(5))).per_million is None


def test_an_http_api_is_billed_at_the_http_price() -> None:
    rest = cost.cost(cost.Usage(apigateway_requests=Decimal(1_000_000)))
    http = cost.cost(cost.Usage(apigateway_requests=Decimal(1_000_000), api="http"))
    assert (rest.total, http.total) == (Decimal("3.70"), Decimal("1.20"))


def test_usage_adds_and_scales_exactly() -> None:
    a = cost.Usage(events=Decimal(1), sqs_requests=Decimal("1.2"))
    b = cost.Usage(events=Decimal(2), sqs_requests=Decimal("0.1"))
    assert (a + b).sqs_requests == Decimal("1.3")
    assert a.scaled(1_000_000).sqs_requests == Decimal("1200000.0")


def test_the_modelled_order_counts_each_hop() -> None:
    one = cost.OrderProfile(batch_size=10).usage()
    assert one.apigateway_requests == 1
    assert one.lambda_requests == Decimal("1.1")  # ingress, and a tenth of a processor batch
    assert one.sqs_requests == Decimal("1.2")  # send, and a tenth each of receive and delete
    # claim 1 + completion 2 (2 KB record) + trace 1 + a tenth of the last-success write
    assert one.dynamodb_write_units == Decimal("4.1")
    assert one.dynamodb_read_units == Decimal("0.1")  # the breaker's read per batch
    fifo = cost.OrderProfile(fifo=True).usage()
    assert (fifo.sqs_requests, fifo.sqs_fifo_requests) == (Decimal(0), Decimal("1.2"))


def test_the_order_figure_per_million() -> None:
    rest = cost.order_to_one_target()
    http = cost.order_to_one_target(cost.OrderProfile(api="http"))
    assert rest.events == 1_000_000
    assert rest.per_million == rest.total
    assert rest.total - http.total == Decimal("2.50")  # 3.70 - 1.20 per million requests
    # The figure the README states, to the cent.
    assert cost.usd(rest.total, "0.01") == "8.65"
    assert cost.usd(http.total, "0.01") == "6.15"
    # Bigger batches spread the per-batch requests: cheaper, never dearer.
    assert cost.order_to_one_target(cost.OrderProfile(batch_size=1)).total > rest.total


def test_the_price_table_says_when_and_where() -> None:
    assert prices.REGION == "eu-central-1"
    assert prices.PRICES_AS_OF.startswith("20")
    for p in prices.PRICES.values():
        assert p.source.startswith("https://") and p.per > 0 and p.usd >= 0
