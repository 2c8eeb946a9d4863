"""Optional integrations for downstream apps; each guards its third-party import with an install hint."""
