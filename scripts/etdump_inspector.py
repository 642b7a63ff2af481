#!/usr/bin/env python3
"""Reads an ETDump that `ferrite profile --etdump` wrote with ExecuTorch's own Inspector.

Not run in CI (it needs ExecuTorch's Python package, ~6 GB with torch):

    pip install executorch==1.5.1 torch==2.14.1
    ferrite profile model_ferrite.pte --iters 10 --etdump profile.etdp
    python scripts/etdump_inspector.py profile.etdp [--expect-events N]

Prints what the Inspector read (event blocks, events, runs per event, the slowest events by
median) and exits non-zero if the Inspector fails or finds fewer events than expected.
"""

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("etdump")
    parser.add_argument("--expect-events", type=int, default=1, help="fail below this many events")
    args = parser.parse_args()

    from executorch.devtools import Inspector

    inspector = Inspector(etdump_path=args.etdump)
    blocks = inspector.event_blocks
    if not blocks:
        print("the Inspector found no event block", file=sys.stderr)
        return 1
    events = [e for block in blocks for e in block.events]
    runs = {len(e.perf_data.raw) for e in events if e.perf_data is not None}
    print(f"{len(blocks)} event block(s), {len(events)} events, runs per event: {sorted(runs)}")
    medians = sorted(((e.perf_data.p50, e.name) for e in events if e.perf_data is not None), reverse=True)
    for p50, name in medians[:12]:
        print(f"  {p50:9.4f} ms  {name}")
    if len(events) < args.expect_events:
        print(f"expected at least {args.expect_events} events", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
