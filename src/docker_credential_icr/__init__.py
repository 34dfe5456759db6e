"""Docker credential helper for IBM Cloud Container Registry."""

__version__ = "0.1.0"
DIST_NAME = "docker-credential-icr"
