"""InPost ShipX webhooks: unsigned. What protects the route is elsewhere, in depth:

- the path token (``/webhooks/inpost/{token}``): ingress compares it in constant time with the
  values of the trigger's secret before this verifier runs (``WebhookTrigger.path_token``);
- the API's resource policy, which lets only InPost's documented source addresses call the route;
- the processor, which re-reads the shipment from ShipX and acts on what ShipX says, never on
  the webhook body.

The delivery id is a digest of the body: ShipX sends no id, and the same status of the same
shipment sent twice is one delivery. The topic is the body's ``event``
(``shipment_status_changed``; ``action`` in older integrations' bodies).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import ClassVar

from shared.webhooks.base import BadRequest, Headers, VerifiedDelivery

BODY_DIGEST_CHARS = 32


class ShipXVerifier:
    scheme: ClassVar[str] = "shipx"
    kept_headers: ClassVar[tuple[str, ...]] = ()
    signature_headers: ClassVar[tuple[str, ...]] = ()

    def verify(
        self, headers: Headers, raw_body: bytes, secrets: Sequence[str], *, now: float, tolerance: int
    ) -> VerifiedDelivery:
        try:
            doc = json.loads(raw_body)
        except (ValueError, RecursionError):
            raise BadRequest("body is not JSON") from None
        action = (doc.get("event") or doc.get("action")) if isinstance(doc, dict) else None
        if not isinstance(action, str) or not action or len(action) > 100 or not action.isprintable():
            raise BadRequest("no event in the ShipX webhook")
        digest = hashlib.sha256(raw_body).hexdigest()[:BODY_DIGEST_CHARS]
        return VerifiedDelivery(f"shipx:{digest}", topic=action)
