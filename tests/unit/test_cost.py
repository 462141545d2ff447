"""The cost arithmetic: counts times the one price table, exact decimals, per million events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from functions.inpost_tracking.declaration import INTEGRATION as INPOST_TRACKING
from functions.shopify_orders.declaration import INTEGRATION as SHOPIFY_ORDERS
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
    rest = cost.order_to_one_target(cost.OrderProfile(api="rest"))
    http = cost.order_to_one_target()  # signed webhooks are served by the HTTP API
    assert rest.events == 1_000_000
    assert rest.per_million == rest.total
    assert rest.total - http.total == Decimal("2.50")  # 3.70 - 1.20 per million requests
    # The figure the README states, to the cent.
    assert cost.usd(rest.total, "0.01") == "8.65"
    assert cost.usd(http.total, "0.01") == "6.15"
    # Bigger batches spread the per-batch requests: cheaper, never dearer.
    assert cost.order_to_one_target(cost.OrderProfile(batch_size=1)).total > http.total


def test_the_price_table_says_when_and_where() -> None:
    assert prices.REGION == "eu-central-1"
    assert prices.PRICES_AS_OF.startswith("20")
    for p in prices.PRICES.values():
        assert p.source.startswith("https://") and p.per > 0 and p.usd >= 0


class _CloudWatch:
    """GetMetricData over fixed series: a metric query by its dimensions, a search by its text
    (every series it finds, each returned under the query's id, as CloudWatch does)."""

    def __init__(self, metrics: dict[tuple[str, ...], float], searches: dict[str, list[float]]) -> None:
        self.metrics, self.searches = metrics, searches

    def get_metric_data(self, **params: Any) -> dict[str, Any]:
        results = []
        for q in params["MetricDataQueries"]:
            if "Expression" in q:
                found = [
                    v
                    for text, values in self.searches.items()
                    if f"SEARCH('{text}', 'Sum'," in q["Expression"]
                    for v in values
                ]
                results += [{"Id": q["Id"], "Values": [v]} for v in found]
                continue
            m = q["MetricStat"]["Metric"]
            key = (m["MetricName"], *[f"{d['Name']}={d['Value']}" for d in m["Dimensions"]])
            results.append({"Id": q["Id"], "Values": [self.metrics[key]] if key in self.metrics else []})
        return {"MetricDataResults": results}


def test_counted_requests_of_a_signed_route_are_the_http_apis_and_billed_at_its_price() -> None:
    [shopify] = [m for m in cost.metrics_for("dev", [SHOPIFY_ORDERS]) if m.namespace == "AWS/ApiGateway"]
    assert shopify.dimensions == ()
    assert shopify.search == (
        '{AWS/ApiGateway,ApiId,Stage,Route} MetricName="Count" Stage="dev" Route="POST /webhooks/shopify/orders"'
    )
    # The route open to InPost's addresses only stays on the REST API, by its method metrics.
    [inpost] = [m for m in cost.metrics_for("dev", [INPOST_TRACKING]) if m.namespace == "AWS/ApiGateway"]
    assert inpost.search is None
    assert dict(inpost.dimensions) == {
        "ApiName": "junction-dev",
        "Method": "POST",
        "Resource": "/webhooks/inpost/{token}",
        "Stage": "dev",
    }
    until = datetime(2026, 12, 6, 12, tzinfo=UTC)
    search = cost.http_route_search("dev", "POST", "/webhooks/shopify/orders")
    cloudwatch = _CloudWatch(
        {("Count", "ApiName=junction-dev", "Method=POST", "Resource=/webhooks/inpost/{token}", "Stage=dev"): 40.0},
        {search: [600.0, 400.0]},  # two series (a redeployed API's old and new id): both count
    )
    usage = cost.aws_usage(cloudwatch, "dev", [SHOPIFY_ORDERS, INPOST_TRACKING], until - timedelta(hours=1), until)
    assert (usage[SHOPIFY_ORDERS.name].apigateway_requests, usage[SHOPIFY_ORDERS.name].api) == (Decimal(1000), "http")
    assert (usage[INPOST_TRACKING.name].apigateway_requests, usage[INPOST_TRACKING.name].api) == (Decimal(40), "rest")
    assert cost.cost(usage[SHOPIFY_ORDERS.name]).lines["apigateway_requests"] == Decimal("0.0012")
    assert cost.cost(usage[INPOST_TRACKING.name]).lines["apigateway_requests"] == Decimal("0.000148")
