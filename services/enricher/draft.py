"""`LeadDraft`: a lead being enriched, with where each field came from."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from shared.messages import Lead, LeadStatus, ResultLead

INPUT_SOURCE = "input"


class LeadDraft:
    # A plain class with slots, not a dataclass: one is made per lead, and `get` is read
    # some forty times per lead by the steps and the waterfall, so it is the values dict's
    # own (C) `get`, bound once, not a Python method around it.
    __slots__ = ("email_candidates", "get", "lead", "sources", "values")

    get: Callable[[str], str | None]

    def __init__(self, lead: Lead, values: dict[str, str], sources: dict[str, str]) -> None:
        self.lead = lead
        self.values = values
        self.sources = sources
        self.email_candidates: list[str] = []
        self.get = values.get

    @classmethod
    def of(cls, lead: Lead) -> LeadDraft:
        # `Lead` omits its defaults (None) when turned into builtins: the fields given.
        values: dict[str, str] = msgspec.to_builtins(lead)
        sources = dict.fromkeys(values, INPUT_SOURCE)
        del sources["id"]
        return cls(lead, values, sources)

    @property
    def id(self) -> str:
        return self.lead.id

    def fill(self, name: str, value: str | None, source: str) -> bool:
        """Set `name` if it is still empty; the first source to find a field keeps it."""
        if not value or self.values.get(name):
            return False
        self.values[name] = value
        self.sources[name] = source
        return True

    def replace(self, name: str, value: str, source: str) -> None:
        """Overwrite with a cleaner form of the same value (normalisation)."""
        if self.values.get(name) != value:
            self.values[name] = value
            self.sources[name] = source

    def result(self, status: LeadStatus = "enriched", error: str | None = None) -> ResultLead:
        return ResultLead(
            **{k: v for k, v in self.values.items() if k in RESULT_VALUE_FIELDS},
            email_candidates=self.email_candidates,
            status=status,
            error=error,
            sources=dict(self.sources),
        )


RESULT_VALUE_FIELDS = frozenset(ResultLead.__struct_fields__) - {
    "status",
    "error",
    "sources",
    "email_candidates",
}
