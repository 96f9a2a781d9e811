"""The sandbox's made-up but consistent world: companies, domains, people and emails.

Everything is derived from the input by hashing, so the same lead always gets the same
answer (same email from every provider that knows it), whatever order requests come in.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Who lives in it: the people the fake lead source serves and the sample leads
# (devtools/samples.py) are made of these.
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
EMAIL_PATTERNS = ("{first}.{last}", "{f}{last}", "{first}", "{first}{last}", "{first}_{last}")
TLDS = (".com", ".com", ".com", ".io", ".co", ".co.uk", ".de")
COMPANY_SUFFIXES = re.compile(
    r"\b(inc|incorporated|llc|ltd|limited|gmbh|ag|sa|sas|plc|corp|corporation|co|company|bv)\b\.?",
    re.IGNORECASE,
)


def fraction(*parts: str) -> float:
    """A stable pseudo-random number in [0, 1) for these inputs."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", plain.lower())


def company_domain(company: str) -> str | None:
    core = COMPANY_SUFFIXES.sub("", company)
    slug = ascii_slug(core)
    if not slug:
        return None
    tld = TLDS[int(fraction("tld", slug) * len(TLDS))]
    return f"{slug}{tld}"


def email_for(first: str, last: str, domain: str) -> str | None:
    first_slug, last_slug = ascii_slug(first), ascii_slug(last)
    if not first_slug or not last_slug:
        return None
    pattern = EMAIL_PATTERNS[int(fraction("pattern", domain) * len(EMAIL_PATTERNS))]
    local = pattern.format(first=first_slug, last=last_slug, f=first_slug[0])
    return f"{local}@{domain}"


def email_status(email: str) -> str:
    return "risky" if fraction("status", email) < 0.15 else "valid"


def knows(provider: str, coverage: float, *key: str) -> bool:
    return fraction(provider, *key) < coverage


# How a mail server treats an address, for the vendor emulations (each says it in its words).
VERDICTS = ((0.6, "valid"), (0.8, "accept_all"), (0.92, "unknown"), (1.0, "invalid"))


def verdict(email: str) -> str:
    """`valid | accept_all | unknown | invalid`, stable for an address."""
    roll = fraction("verdict", email.lower())
    return next(word for limit, word in VERDICTS if roll < limit)
