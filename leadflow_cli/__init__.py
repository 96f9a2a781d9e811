"""`leadflow`: the command-line client of the leadflow gateway (HTTP only)."""
