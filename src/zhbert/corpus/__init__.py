"""Corpus pipeline: sources -> cleaning -> dedup -> splits -> vocabulary -> data directory."""
