"""`LeadDraft`: a lead being enriched, with where each field came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from shared.messages import Lead, LeadStatus, ResultLead

INPUT_SOURCE = "input"


@dataclass
class LeadDraft:
    lead: Lead
    values: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    email_candidates: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, lead: Lead) -> LeadDraft:
        values = {k: v for k, v in msgspec.structs.asdict(lead).items() if v is not None}
        sources = {k: INPUT_SOURCE for k in values if k != "id"}
        return cls(lead=lead, values=values, sources=sources)

    @property
    def id(self) -> str:
        return self.lead.id

    def get(self, name: str) -> str | None:
        return self.values.get(name)

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
