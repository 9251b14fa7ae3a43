"""Spiders that ship with the platform."""
