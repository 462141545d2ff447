"""Stock to Allegro: batch quantity-change commands, one per quantity, up to 1,000 offers each.

- A command sets one value for many offers, so the message's SKUs are grouped by quantity. Its id is
  derived from the message and the group (``derive_command_id``): a retry re-sends the same
  command, which Allegro does not apply twice.
- Allegro cannot set a quantity below 1: an offer with nothing to sell is ended (publication
  command END); when stock returns its quantity is set, then it is activated again.
- Commands run asynchronously: the flow follows each to its end, then dead-letters each offer
  Allegro refused (``offer_refused``, with Allegro's code) on its own.
- Every request spends from the ``allegro`` rate budget (9,000/min per client id, shared by all
  invocations), and every offer change from the offer-change budget of its command kind
  (9,000/min); a 429 holds the whole account for its Retry-After (Allegro blocks for a minute).
- The OAuth refresh token rotates; the client stores each new one in Secrets Manager before use.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from shared.connectors.allegro import (
    MAX_QUANTITY,
    AllegroClient,
    CommandStatus,
    derive_command_id,
)
from shared.declaration import secret_id
from shared.errors import OutcomeUnsettled, RateLimited
from shared.processing import Attempt, FlowContext
from shared.rate_budget import SlidingWindow

from .declaration import ALLEGRO_API
from .stock import Mapped, StockTarget, wait_within

FOLLOW_INTERVAL_SECONDS = 0.5
OFFER_CHANGES_PER_MINUTE = 9000  # per user and command kind (docs/allegro-contract.md)
# Offers per command (Allegro takes 1,000): a group of commands spends at most this from the
# offer-change window, which keeps that much room for commands arriving after their tokens.
COMMAND_OFFERS = 250


class StockToAllegro(StockTarget):
    def __init__(self, ctx: FlowContext, client: AllegroClient) -> None:
        super().__init__(ctx)
        self.client = client
        account = ctx.target.rate.account if ctx.target.rate else "allegro"
        # Allegro also limits offer changes per command kind: 9,000 in any minute, counted when
        # the commands arrive. The budget counts the same window when tokens are taken, less one
        # group's worth (COMMAND_OFFERS) for the commands of a group arriving a moment later.
        self.changes = {
            kind: SlidingWindow(
                ctx.ddb,
                ctx.state_table,
                f"{account}#{kind}-changes",
                OFFER_CHANGES_PER_MINUTE - COMMAND_OFFERS,
                60,
                clock=ctx.clock,
            )
            for kind in ("quantity", "publication")
        }

    def catalogue(self) -> Iterable[tuple[str, str]]:
        return self.client.offers()

    def confirms(self, mapped: Mapped) -> bool:
        """Only the level decides END and ACTIVATE, by whether the offer was taken to zero: record
        what Allegro took at a zero crossing; a change between two positive levels needs no write."""
        return mapped.level.quantity == 0 or mapped.previous == 0

    def _max_wait(self, attempt: Attempt) -> float:
        return max(0.0, attempt.deadline - time.monotonic() - 10)

    def _call(self, attempt: Attempt, fn: Any, *args: Any, spend: bool = True, **kw: Any) -> Any:
        """One request; ``spend=False`` when its token was taken with its group's (``_send``)."""
        if spend and self.budget is not None:
            self.budget.acquire(1, max_wait=self._max_wait(attempt))
        try:
            with self.client.bounded(attempt.timeout):
                return fn(*args, **kw)
        except RateLimited as exc:
            if self.budget is not None:
                self.budget.hold(exc.retry_after or 60.0)
            raise

    def _send(self, attempt: Attempt, kind: str, key: str, commands: list[tuple[int | str, list[Mapped]]]) -> list[str]:
        """Send the commands, taking budget tokens for a group of them at once (up to one bucket
        burst of offers): two DynamoDB calls per group instead of per request. Each command's two
        requests (the command and its first status read) are paid for with it."""
        sent: list[str] = []
        group: list[tuple[int | str, list[Mapped]]] = []
        offers = 0
        for value, members in [*commands, (0, [])]:
            if group and (not members or offers + len(members) > COMMAND_OFFERS):
                self.changes[kind].acquire(offers, max_wait=self._max_wait(attempt))
                if self.budget is not None:
                    self.budget.acquire(2 * len(group), max_wait=self._max_wait(attempt))
                for group_value, chunk in group:
                    command_id = derive_command_id(f"{key}:{kind}:{group_value}:{','.join(m.target_id for m in chunk)}")
                    offer_ids = [m.target_id for m in chunk]
                    if kind == "quantity":
                        attempt.creating()
                        self._call(
                            attempt, self.client.change_quantity, command_id, offer_ids, int(group_value), spend=False
                        )
                    else:
                        self._call(
                            attempt,
                            self.client.change_publication,
                            command_id,
                            offer_ids,
                            str(group_value),
                            spend=False,
                        )
                    sent.append(command_id)
                group, offers = [], 0
            if members:
                group.append((value, members))
                offers += len(members)
        return sent

    def push(self, mapped: list[Mapped], attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        batch = ids.get("batch", "")
        by_offer = {m.target_id: m for m in mapped}
        # Nothing to sell: end the offer (Allegro sets no quantity below 1). Stock back after we
        # ended it: set the quantity, then activate (Allegro activates only an offer with stock).
        # An offer the seller ended is left ended: we activate only what we ended.
        ending = [m for m in mapped if m.level.quantity == 0 and m.previous != 0]
        returning = [m for m in mapped if m.level.quantity > 0 and m.previous == 0]
        groups: dict[int, list[Mapped]] = {}
        for m in mapped:
            if m.level.quantity > 0:
                groups.setdefault(min(m.level.quantity, MAX_QUANTITY), []).append(m)
        quantities: list[tuple[int | str, list[Mapped]]] = [
            (quantity, chunk) for quantity, members in sorted(groups.items()) for chunk in _chunks(members)
        ]
        sent = self._send(attempt, "quantity", batch, quantities)
        refused = self._results(attempt, "quantity", sent, by_offer)
        active = [m for m in returning if m.level.sku not in refused]
        publications: list[tuple[int | str, list[Mapped]]] = [
            (action, chunk) for action, members in (("END", ending), ("ACTIVATE", active)) for chunk in _chunks(members)
        ]
        published = self._send(attempt, "publication", batch, publications)
        refused |= self._results(attempt, "publication", published, by_offer)
        return {"allegro_commands": str(len(sent) + len(published)), "allegro_refused": str(len(refused))}

    def _results(self, attempt: Attempt, kind: str, commands: list[str], by_offer: dict[str, Mapped]) -> set[str]:
        """Follow the commands to their end; dead-letter each offer Allegro refused. The SKUs refused."""
        refused: set[str] = set()
        reader = self.client.publication if kind == "publication" else self.client.command
        pending = list(commands)
        first = True  # each command's first status read was paid for when it was sent
        while pending:
            still: list[str] = []
            for command_id in pending:
                status: CommandStatus = self._call(attempt, reader, command_id, spend=not first)
                if not status.done:
                    still.append(command_id)
                    continue
                if status.failed:
                    refused |= self._refused(attempt, kind, command_id, by_offer, refused)
            pending, first = still, False
            if pending and not wait_within(attempt, FOLLOW_INTERVAL_SECONDS):
                raise OutcomeUnsettled(f"{len(pending)} Allegro commands still running", retry_after=5)
        return refused

    def _refused(
        self, attempt: Attempt, kind: str, command_id: str, by_offer: dict[str, Mapped], known: set[str]
    ) -> set[str]:
        reader = self.client.failed_publication_tasks if kind == "publication" else self.client.failed_tasks
        refused: set[str] = set()
        for failure in self._call(attempt, reader, command_id):
            offer = by_offer.get(failure.offer_id)
            if offer is None or offer.level.sku in known or offer.level.sku in refused:
                continue
            refused.add(offer.level.sku)
            reason = f"{kind} change refused: {failure.code}: {failure.message}"[:500]
            attempt.reject(offer.level.sku, offer.level.item, "offer_refused", reason)
        return refused


def _chunks(members: list[Mapped]) -> list[list[Mapped]]:
    return [members[i : i + COMMAND_OFFERS] for i in range(0, len(members), COMMAND_OFFERS)]


def build(ctx: FlowContext, http: httpx.Client | None = None) -> StockToAllegro:
    name = secret_id(ctx.stage, ALLEGRO_API)

    def source(refresh: bool) -> dict[str, Any]:
        return ctx.secrets.get_json(name, refresh=refresh)

    def store(doc: dict[str, Any]) -> None:
        ctx.secrets.put_json(name, doc)

    return StockToAllegro(ctx, AllegroClient(source, store, http, clock=ctx.clock))
