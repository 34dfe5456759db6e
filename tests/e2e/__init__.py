"""End-to-end tests against real parts (a package so pytest puts the repo root on sys.path)."""
