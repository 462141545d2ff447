"""Public AWS prices, one table for every cost figure Junction states (``junction cost``, the
order flow's modelled figure in the README).

Region eu-central-1 (Frankfurt): the region for sellers in Poland. On-demand list prices in USD,
without the free tier, the first volume tier of each service. Check them against the pricing
pages below when ``PRICES_AS_OF`` is older than a quarter, and change the figure here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

PRICES_AS_OF = "2026-12-06"
REGION = "eu-central-1"
CURRENCY = "USD"


@dataclass(frozen=True)
class Price:
    usd: Decimal  # for ``per`` units
    per: int
    unit: str
    source: str

    @property
    def each(self) -> Decimal:
        return self.usd / self.per


LAMBDA = "https://aws.amazon.com/lambda/pricing/"
SQS = "https://aws.amazon.com/sqs/pricing/"
DYNAMODB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
API_GATEWAY = "https://aws.amazon.com/api-gateway/pricing/"
EVENTBRIDGE = "https://aws.amazon.com/eventbridge/pricing/"
SECRETS_MANAGER = "https://aws.amazon.com/secrets-manager/pricing/"

PRICES: dict[str, Price] = {
    "lambda_request": Price(Decimal("0.20"), 1_000_000, "request", LAMBDA),
    # Junction's functions run on Arm (Graviton); x86 kept for comparison.
    "lambda_gb_second_arm": Price(Decimal("0.0000133334"), 1, "GB-second", LAMBDA),
    "lambda_gb_second_x86": Price(Decimal("0.0000166667"), 1, "GB-second", LAMBDA),
    # Every 64 KB chunk of a request is one request; batch actions of up to 10 messages are one.
    "sqs_request_standard": Price(Decimal("0.40"), 1_000_000, "request", SQS),
    "sqs_request_fifo": Price(Decimal("0.50"), 1_000_000, "request", SQS),
    # On-demand, Standard table class: a write unit per started KB, a read unit per started 4 KB
    # (strongly consistent; eventually consistent is half).
    "dynamodb_write_unit": Price(Decimal("0.7625"), 1_000_000, "write request unit", DYNAMODB),
    "dynamodb_read_unit": Price(Decimal("0.1525"), 1_000_000, "read request unit", DYNAMODB),
    # REST APIs (Junction's webhooks), first 333 million a month; HTTP APIs for comparison.
    "apigateway_rest_request": Price(Decimal("3.70"), 1_000_000, "request", API_GATEWAY),
    "apigateway_http_request": Price(Decimal("1.20"), 1_000_000, "request", API_GATEWAY),
    # Scheduled rules on the default bus are not charged; custom events put on a bus are.
    "eventbridge_scheduled_invocation": Price(Decimal("0"), 1_000_000, "invocation", EVENTBRIDGE),
    "eventbridge_custom_event": Price(Decimal("1.00"), 1_000_000, "event", EVENTBRIDGE),
    "secretsmanager_api_call": Price(Decimal("0.05"), 10_000, "API call", SECRETS_MANAGER),
}


def price(name: str) -> Decimal:
    """The price of one unit (USD)."""
    return PRICES[name].each
