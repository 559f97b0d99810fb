"""Bridges to other training libraries (TRL)."""
