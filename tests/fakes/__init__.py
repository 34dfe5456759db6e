"""Fakes and runners for end-to-end tests: fake IAM, ICR token service, registry, dockerd.

Stdlib + `cryptography` only, so the fakes work in any test environment without
pulling in the helper's own dependencies.
"""
