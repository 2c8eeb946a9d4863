"""Adapters turning public behaviour datasets into unified histories with evaluation targets."""
