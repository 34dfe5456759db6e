"""Test suite for docker-credential-icr (a package so `tests.fakes` imports cleanly)."""
