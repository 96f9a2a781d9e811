"""Realistic sample leads, deterministic for a seed: the demo file, tests and benchmarks.

`python -m devtools.samples 300 > samples/leads.csv` regenerates the shipped file.
"""

from __future__ import annotations

import csv
import random
import sys
from typing import Any

FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Linus",
    "Margaret",
    "Tim",
    "Barbara",
    "Dennis",
    "Frances",
    "Guido",
    "Radia",
    "Ken",
    "Hedy",
    "John",
    "Sophie",
    "Mateo",
    "Aiko",
    "Olusegun",
    "Priya",
    "Lars",
    "Chloé",
    "José",
    "Zoë",
    "Siobhan",
    "Wei",
    "Fatima",
    "Noah",
    "Ingrid",
    "Ravi",
)
LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Johnson",
    "Torvalds",
    "Hamilton",
    "Berners-Lee",
    "Liskov",
    "Ritchie",
    "Allen",
    "van Rossum",
    "Perlman",
    "Thompson",
    "Lamarr",
    "McCarthy",
    "Wilson",
    "García",
    "Tanaka",
    "Adeyemi",
    "Sharma",
    "Nilsson",
    "Dubois",
    "Müller",
    "O'Brien",
    "Zhang",
    "Haddad",
    "Kowalski",
    "Rossi",
    "de Vries",
    "Okafor",
)
TITLES = (
    "VP Engineering",
    "Head of Sales",
    "Chief Technology Officer",
    "Senior Software Engineer",
    "Marketing Manager",
    "Director of Operations",
    "Founder & CEO",
    "Account Executive",
    "Data Scientist",
    "HR Business Partner",
    "Product Manager",
    "CFO",
    "Growth Lead",
    "Customer Success Manager",
    "General Counsel",
    "Staff Engineer",
    "SDR",
    "Talent Acquisition",
)
COMPANIES = (
    "Analytical Engines Ltd",
    "Acme Corp",
    "Globex Inc.",
    "Initech LLC",
    "Umbrella GmbH",
    "Hooli",
    "Pied Piper",
    "Stark Industries",
    "Wayne Enterprises",
    "Cyberdyne Systems",
    "Soylent Co",
    "Tyrell Corporation",
    "Wonka Industries",
    "Vandelay Industries",
    "Massive Dynamic",
    "Aperture Science",
    "Black Mesa",
    "Oscorp",
    "Nakatomi Trading",
    "Gringotts Bank plc",
)
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
