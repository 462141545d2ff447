"""Stock to Allegro: batch quantity-change commands, one per quantity, up to 1,000 offers each.

- A command sets one value for many offers, so the message's SKUs are grouped by quantity. Its id is
  derived from the message and the group (``derive_command_id``): a retry re-sends the same
  command, which Allegro does not apply twice.
- Allegro cannot set a quantity below 1: an offer with nothing to sell is ended (publication
  command END) and activated again when stock returns.
- Commands run asynchronously: the flow follows each to its end, then dead-letters each offer
  Allegro refused (``offer_refused``, with Allegro's code) on its own.
- Every request spends from the ``allegro`` rate budget (9,000/min per client id, shared by all
  invocations); a 429 holds the whole account for its Retry-After (Allegro blocks for a minute).
- The OAuth refresh token rotates; the client stores each new one in Secrets Manager before use.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from shared.connectors.allegro import (
    MAX_OFFERS_PER_COMMAND,
    MAX_QUANTITY,
    AllegroClient,
    CommandStatus,
    derive_command_id,
)
from shared.declaration import secret_id
from shared.errors import OutcomeUnsettled, RateLimited
from shared.processing import Attempt, FlowContext

from .declaration import ALLEGRO_API
from .stock import Mapped, StockTarget, wait_within

FOLLOW_INTERVAL_SECONDS = 0.5
OFFER_ENDED = "EXCEPTION_DURING_OFFER_QUANTITY_UPDATE"  # the code of a change to an offer not ACTIVE


class StockToAllegro(StockTarget):
    def __init__(self, ctx: FlowContext, client: AllegroClient) -> None:
        super().__init__(ctx)
        self.client = client

    def catalogue(self) -> Iterable[tuple[str, str]]:
        return self.client.offers()

    def _spend(self, attempt: Attempt) -> None:
        if self.budget is not None:
            self.budget.acquire(1, max_wait=max(0.0, attempt.deadline - time.monotonic() - 10))

    def _call(self, attempt: Attempt, fn: Any, *args: Any, **kw: Any) -> Any:
        self._spend(attempt)
        try:
            with self.client.bounded(attempt.timeout):
                return fn(*args, **kw)
        except RateLimited as exc:
            if self.budget is not None:
                self.budget.hold(exc.retry_after or 60.0)
            raise

    def push(self, mapped: list[Mapped], attempt: Attempt, ids: dict[str, str]) -> dict[str, str]:
        by_offer = {m.target_id: m for m in mapped}
        ending = [m for m in mapped if m.level.quantity == 0]
        # Back from zero: the offer was ended; activate it before setting its quantity.
        returning = [m for m in mapped if m.level.quantity > 0 and m.previous == 0]
        groups: dict[int, list[Mapped]] = {}
        for m in mapped:
            if m.level.quantity > 0:
                groups.setdefault(min(m.level.quantity, MAX_QUANTITY), []).append(m)
        batch = ids.get("batch", "")
        commands: list[tuple[str, str, list[Mapped]]] = []  # (kind, id, offers)
        for action, members in (("END", ending), ("ACTIVATE", returning)):
            for chunk in _chunks(members):
                command_id = derive_command_id(f"{batch}:{action}:{','.join(m.target_id for m in chunk)}")
                self._call(attempt, self.client.change_publication, command_id, [m.target_id for m in chunk], action)
                commands.append(("publication", command_id, chunk))
        for quantity, members in sorted(groups.items()):
            for chunk in _chunks(members):
                command_id = derive_command_id(f"{batch}:{quantity}:{','.join(m.target_id for m in chunk)}")
                attempt.creating()
                self._call(attempt, self.client.change_quantity, command_id, [m.target_id for m in chunk], quantity)
                commands.append(("quantity", command_id, chunk))
        refused = 0
        reactivate: list[Mapped] = []
        for kind, command_id, _members in commands:
            status = self._follow(attempt, kind, command_id)
            if status.failed:
                failures = self._call(attempt, self._failed, kind, command_id)
                for failure in failures:
                    m = by_offer.get(failure.offer_id)
                    if m is None:
                        continue
                    if kind == "quantity" and failure.code == OFFER_ENDED and m.previous is None:
                        reactivate.append(m)  # ended before we knew it: activate, then set again
                        continue
                    refused += 1
                    attempt.reject(
                        m.level.sku, m.level.item, "offer_refused", f"{failure.code}: {failure.message}"[:500]
                    )
        if reactivate:
            chunk_ids = [m.target_id for m in reactivate]
            command_id = derive_command_id(f"{batch}:ACTIVATE-RETRY:{','.join(chunk_ids)}")
            self._call(attempt, self.client.change_publication, command_id, chunk_ids, "ACTIVATE")
            self._follow(attempt, "publication", command_id)
            raise OutcomeUnsettled(
                f"{len(reactivate)} ended offers activated; setting their quantity next", retry_after=1
            )
        return {"allegro_commands": str(len(commands)), "allegro_refused": str(refused)}

    def _failed(self, kind: str, command_id: str) -> Any:
        if kind == "publication":
            return self.client.failed_publication_tasks(command_id)
        return self.client.failed_tasks(command_id)

    def _follow(self, attempt: Attempt, kind: str, command_id: str) -> CommandStatus:
        """Wait for the command to finish, within the invocation; a command still running when the
        time is up is followed again by the retry (re-sending it changes nothing)."""
        reader = self.client.publication if kind == "publication" else self.client.command
        while True:
            status: CommandStatus = self._call(attempt, reader, command_id)
            if status.done:
                return status
            if not wait_within(attempt, FOLLOW_INTERVAL_SECONDS):
                raise OutcomeUnsettled(f"Allegro command {command_id} still running", retry_after=5)


def _chunks(members: list[Mapped]) -> list[list[Mapped]]:
    return [members[i : i + MAX_OFFERS_PER_COMMAND] for i in range(0, len(members), MAX_OFFERS_PER_COMMAND)]


def build(ctx: FlowContext, http: httpx.Client | None = None) -> StockToAllegro:
    name = secret_id(ctx.stage, ALLEGRO_API)

    def source(refresh: bool) -> dict[str, Any]:
        return ctx.secrets.get_json(name, refresh=refresh)

    def store(doc: dict[str, Any]) -> None:
        ctx.secrets.put_json(name, doc)

    return StockToAllegro(ctx, AllegroClient(source, store, http, clock=ctx.clock))
