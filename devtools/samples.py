"""Realistic sample leads, deterministic for a seed: the demo file, tests and benchmarks.

The names, titles and companies are the sandbox world's (services/sandbox/world.py), the
people its lead source serves too.

`python -m devtools.samples 300 > samples/leads.csv` regenerates the shipped file.
"""

from __future__ import annotations

import csv
import random
import sys
from typing import Any

from services.sandbox.world import COMPANIES, FIRST, LAST, TITLES

LOCATIONS = ("London, UK", "Berlin, DE", "Paris, FR", "New York, US", "Lagos, NG", "Tokyo, JP")


def make_leads(count: int, seed: int = 1, *, with_ids: bool = True) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    leads = []
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        handle = f"{first}-{last}-{seed}-{n}".lower().replace(" ", "").replace("'", "")
        lead: dict[str, Any] = {"id": f"s{seed}-{n:06d}"} if with_ids else {}
        lead |= {
            "full_name": f"{first} {last}"
            if rng.random() < 0.8
            else f"{first.upper()} {last.upper()}",
            "title": rng.choice(TITLES),
            "company": rng.choice(COMPANIES),
            "linkedin_url": f"https://www.linkedin.com/in/{handle}",
            "location": rng.choice(LOCATIONS),
        }
        leads.append(lead)
    return leads


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    leads = make_leads(count)
    writer = csv.DictWriter(sys.stdout, fieldnames=list(leads[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(leads)


if __name__ == "__main__":
    main()
