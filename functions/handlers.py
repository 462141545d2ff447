"""The Lambda handlers of every processor and poller.

One handler each, for every integration: the function's environment names its integration
(``JUNCTION_INTEGRATION``) and, for a processor, its target (``JUNCTION_TARGET``); the declaration
names the module that builds the flow or the source. Ingress functions keep a module per
integration (``<package>/ingress.py``): their cold start imports nothing else.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from functions.registry import get
from shared.processing import make_sqs_handler

_built: dict[str, Any] = {}


def processor(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "processor" not in _built:
        integration = get(os.environ["JUNCTION_INTEGRATION"])
        target = integration.target(os.environ["JUNCTION_TARGET"])
        flow = importlib.import_module(integration.flow_module(target))
        _built["processor"] = make_sqs_handler(integration, target, flow.build)
    result: dict[str, Any] = _built["processor"](event, context)
    return result


def poller(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "poller" not in _built:
        from shared.polling import make_poller_handler

        integration = get(os.environ["JUNCTION_INTEGRATION"])
        assert integration.poller_module is not None, f"{integration.name} has no schedule"
        source = importlib.import_module(integration.poller_module)
        _built["poller"] = make_poller_handler(integration, source.build)
    result: dict[str, Any] = _built["poller"](event, context)
    return result
