"""Fuzz the ingress at volume: the properties of tests/unit/test_fuzz_ingress.py over many inputs.

Properties (the same functions ``make test`` runs a few hundred times each):
- every verifier, on any headers, body and secrets, returns a delivery or raises our own
  ``IngressRejection`` (401/400), nothing else;
- the request parsing (``read_request``), on any event, returns or raises ``IngressRejection``;
- the handler, on any event and on correctly signed events with one header perhaps spoilt,
  answers 202, 400, 401 or 413: never a 5xx.

Prints, per property, the inputs tried, inputs per second and the count of each outcome; exits
with status 1 (and hypothesis's minimal failing input) if a property fails. Logging and metrics
of the handler are switched off while it runs: the figure is the parsing, not the log writer.

Usage: ``python benchmarks/fuzz_ingress.py [--examples 100000] [--seed 0] [--json]``
(``--examples`` is the total, shared equally by the properties).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the repository importable without an install
    sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

import shared.ingress  # noqa: E402
from tests.unit.test_fuzz_ingress import PROPERTIES  # noqa: E402


def run_property(name: str, strategy: Any, check: Any, examples: int, seed_value: int) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()

    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def prop(case: Any) -> None:
        outcomes[check(case)] += 1

    started = time.perf_counter()
    prop()
    seconds = time.perf_counter() - started
    total = sum(outcomes.values())
    return {
        "property": name,
        "inputs": total,
        "seconds": round(seconds, 2),
        "inputs_per_second": round(total / seconds) if seconds else None,
        "outcomes": dict(sorted(outcomes.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000, help="total inputs, shared by the properties")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    for name in ("log", "emit_metrics"):
        setattr(shared.ingress, name, lambda *_a, **_k: None)
    per_property = -(-args.examples // len(PROPERTIES))
    results = []
    started = time.perf_counter()
    for name, strategy, check in PROPERTIES:
        try:
            results.append(run_property(name, strategy, check, per_property, args.seed))
        except Exception as exc:  # a property failed: hypothesis has printed the minimal input
            print(f"FAILED {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    seconds = time.perf_counter() - started
    total = sum(r["inputs"] for r in results)
    summary = {"inputs": total, "seconds": round(seconds, 1), "inputs_per_second": round(total / seconds)}
    if args.json:
        print(json.dumps({"properties": results, "total": summary}, indent=2))
        return 0
    for r in results:
        print(f"{r['property']:<24} {r['inputs']:>7} inputs  {r['seconds']:>7.1f} s  {r['inputs_per_second']:>6}/s")
        for outcome, count in r["outcomes"].items():
            print(f"    {outcome:<28} {count:>7}")
    rate = summary["inputs_per_second"]
    print(f"{'total':<24} {total:>7} inputs  {seconds:>7.1f} s  {rate:>6}/s  (no 5xx, no foreign exception)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
