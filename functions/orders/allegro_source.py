"""The poller's source for Allegro orders: the order event journal, read on from the last event id.

- Allegro keeps 60 days of events and names its latest (``GET /order/event-stats``); a first run
  starts there, so a new integration does not replay two months of orders.
- A page of events is collapsed per checkout form: one order bought, filled in and paid in the
  same page is one change, and a second READY_FOR_PROCESSING (Allegro sends more than one) or
  events journaled out of order change nothing more. The change's stamp is the form's last event
  id in the page; its data is the form as Allegro holds it now, read once per page.
- Events that change nothing a target needs are skipped without reading the form: BOUGHT and
  FILLED_IN (unpaid, the data may still change), FULFILLMENT_STATUS_CHANGED (the seller's own
  doing) and AUTO_CANCELLED (an order never paid, so never sent on). A form read while still
  unpaid is skipped too: its READY_FOR_PROCESSING is on its way.
- The forms of a page are read within the poller's timeout: when it runs out, the page ends
  before the first event of the next unread form, and the next page starts there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from functions.erp_stock_to_channels.declaration import ALLEGRO_API
from shared.connectors.allegro import MAX_EVENTS_LIMIT, AllegroClient, CheckoutFormNotFound
from shared.declaration import secret_id
from shared.polling import Change, CursorState, Page, PollerContext, Rejected

RULES_VERSION = "1"
# What a target acts on: a paid order, the buyer's change to it, the buyer's cancellation.
WANTED_EVENTS = frozenset({"READY_FOR_PROCESSING", "BUYER_MODIFIED", "BUYER_CANCELLED"})
# The form statuses a target acts on; BOUGHT and FILLED_IN are not paid yet.
SETTLED_STATUSES = frozenset({"READY_FOR_PROCESSING", "CANCELLED"})
# The position of a cursor that started on an empty journal: the journal is read from its
# beginning, which holds only what arrived since (not an event id: those are base64).
BEGINNING = "@beginning"
# Keep this much of the timeout for the page's answer: a form read is not started after it.
READ_RESERVE_SECONDS = 2.0


@dataclass
class FormEvents:
    """One checkout form's events in a page, in journal order."""

    form_id: str
    first: int  # index of its first event in the page
    last_id: str = ""
    types: list[str] = field(default_factory=list)


class AllegroOrderSource:
    rules_version = RULES_VERSION

    def __init__(self, client: AllegroClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock

    def read(self, cursor: CursorState, page_size: int, lookback_seconds: int, timeout: float) -> Page:
        deadline = self.clock() + timeout
        start = cursor.next or cursor.position or self._latest(timeout)
        limit = max(1, min(page_size, MAX_EVENTS_LIMIT))
        events = self.client.order_events(None if start == BEGINNING else start, limit, timeout=timeout)
        if not events:
            return Page([], position=start)
        end, changes, rejected = self._forms(events, deadline)
        last = str(events[end - 1]["id"])
        full = len(events) == limit or end < len(events)
        return Page(changes, rejected, next=last if full else None, position=last)

    def _latest(self, timeout: float) -> str:
        """Where a first run starts: the latest event's id, or the journal's beginning while the
        seller has no events (a cursor left empty would skip what arrives before the next run)."""
        latest = self.client.order_event_stats(timeout=timeout).get("latestEvent")
        return str(latest["id"]) if isinstance(latest, dict) else BEGINNING

    def _forms(self, events: list[dict[str, Any]], deadline: float) -> tuple[int, list[Change], list[Rejected]]:
        """Read each form the page's events ask for, oldest first, while time is left. Returns how
        many events the page keeps, with their changes and rejections."""
        groups, rejected = _collapse(events)
        forms: dict[str, dict[str, Any] | None] = {}
        end = len(events)
        for group in groups:
            if not WANTED_EVENTS.intersection(group.types):
                continue
            left = deadline - self.clock() - READ_RESERVE_SECONDS
            if forms and left <= 0:
                end = group.first
                break
            try:
                forms[group.form_id] = self.client.checkout_form(group.form_id, timeout=max(left, 1.0))
            except CheckoutFormNotFound:
                forms[group.form_id] = None
        if end < len(events):  # the page ends early: what its remaining events say waits for the next
            groups, rejected = _collapse(events[:end])
        changes: list[Change] = []
        for group in groups:
            if group.form_id not in forms or not WANTED_EVENTS.intersection(group.types):
                continue  # a form whose wanted event was cut off is sent with the next page
            form = forms[group.form_id]
            if form is None:
                rejected.append(_gone(group))
            elif form.get("status") in SETTLED_STATUSES:
                changes.append(_change(group, form))
        return end, changes, rejected


def _collapse(events: list[dict[str, Any]]) -> tuple[list[FormEvents], list[Rejected]]:
    """The page's events per checkout form, forms in the order of their first event; an event
    naming no form is rejected on its own."""
    groups: dict[str, FormEvents] = {}
    rejected: list[Rejected] = []
    for n, event in enumerate(events):
        order = event.get("order")
        form = order.get("checkoutForm") if isinstance(order, dict) else None
        form_id = form.get("id") if isinstance(form, dict) else None
        kind = event.get("type")
        event_id = str(event["id"])
        if not isinstance(form_id, str) or not form_id or not isinstance(kind, str):
            # Ids and type only: the event also carries the buyer's data.
            item = {"event_id": event_id, "type": kind if isinstance(kind, str) else None}
            rejected.append(Rejected("malformed_event", "an order event without a checkout form id or type", item))
            continue
        group = groups.setdefault(form_id, FormEvents(form_id, n))
        group.last_id = event_id
        group.types.append(kind)
    return list(groups.values()), rejected


def _change(group: FormEvents, form: dict[str, Any]) -> Change:
    return Change(
        key=group.form_id,
        stamp=group.last_id,
        data={"checkout_form": form, "event_types": list(group.types), "event_id": group.last_id},
    )


def _gone(group: FormEvents) -> Rejected:
    item = {"checkout_form_id": group.form_id, "event_id": group.last_id, "event_types": list(group.types)}
    return Rejected(
        "checkout_form_not_found",
        "Allegro no longer serves the checkout form the events name",
        item,
        key=group.form_id,
        stamp=group.last_id,
    )


def build(ctx: PollerContext, http: httpx.Client | None = None) -> AllegroOrderSource:
    name = secret_id(ctx.stage, ALLEGRO_API)

    def source(refresh: bool) -> dict[str, Any]:
        return ctx.secrets.get_json(name, refresh=refresh)

    def store(doc: dict[str, Any]) -> None:
        ctx.secrets.put_json(name, doc)

    return AllegroOrderSource(AllegroClient(source, store, http, clock=ctx.clock))
