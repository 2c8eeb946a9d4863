"""Data sources for training and evaluation: synthetic events, wire dicts, Amazon files."""
