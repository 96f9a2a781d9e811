"""Which lead field a column of a lead file means, and a CSV file's delimiter.

Files come from spreadsheets and CRM exports, so column names vary ("Full Name",
"LinkedIn Profile URL", "E-mail"...): a header is matched by its letters and digits only,
lower-cased, against the aliases of each API field. One table for the CLI (which reads
files before sending them) and the gateway (which reads uploaded CSV files); standard
library only, since the CLI needs nothing else.
"""

from __future__ import annotations

import re

FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "lead id", "external id", "client id", "record id"),
    "full_name": ("full name", "name", "contact name", "contact", "person", "lead name"),
    "first_name": ("first name", "first", "given name", "forename", "fname"),
    "last_name": ("last name", "last", "surname", "family name", "lname"),
    "title": ("title", "job title", "position", "role", "job role", "headline", "designation"),
    "company": (
        "company",
        "company name",
        "organization",
        "organisation",
        "organization name",
        "employer",
        "account name",
    ),
    "company_domain": (
        "company domain",
        "domain",
        "website",
        "company website",
        "company url",
        "web site",
        "homepage",
    ),
    "linkedin_url": (
        "linkedin url",
        "linkedin",
        "linkedin profile",
        "linkedin profile url",
        "linkedin link",
        "person linkedin url",
        "profile url",
        "li url",
    ),
    "email": ("email", "email address", "mail", "work email", "business email"),
    "phone": ("phone", "phone number", "telephone", "tel", "mobile", "mobile phone", "cell"),
    "location": ("location", "city", "geo", "region", "address", "locality"),
}
LEAD_FIELDS: tuple[str, ...] = tuple(FIELD_ALIASES)
# Spelling-insensitive: "Full Name", "full_name" and "FULLNAME" all become "fullname".
ALIASES: dict[str, str] = {
    re.sub(r"[^a-z0-9]", "", alias): name
    for name, aliases in FIELD_ALIASES.items()
    for alias in (name, *aliases)
}
CSV_DELIMITERS = ",;\t|"


def field_for(column: str) -> str | None:
    return ALIASES.get(re.sub(r"[^a-z0-9]", "", column.lower()))


def delimiter_of(header: str) -> str:
    """The candidate the header line holds most of (`;` from European spreadsheets, tabs...).

    Decided on the header alone: csv.Sniffer also weighs the data rows and can be misled by
    a `;` that a column's values happen to hold.
    """
    header = header.split("\n", 1)[0]
    counts = {d: header.count(d) for d in CSV_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])  # ties: the first, so ',' wins
    return best if counts[best] else ","
