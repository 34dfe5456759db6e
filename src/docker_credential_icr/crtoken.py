"""Trusted profiles from compute-resource tokens: the IAM cr-token grant.

A compute resource (an IKS pod, a Code Engine job, a kubelet-issued service-account
token) proves who it is with a token Kubernetes or Code Engine signed; IAM checks it
against the trust rules of the named trusted profile and answers with that profile's
access token. There is no refresh token, so the answer is always `iambearer`.
"""

from __future__ import annotations

from docker_credential_icr import iam, log, tokens
from docker_credential_icr.i18n import _
from docker_credential_icr.settings import Settings
from docker_credential_icr.sources import Identity, profile_field, read_cr_token

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable


def exchange(endpoint: str, cr_token: str, profile: str, deadline_at: float,
             what: str | Callable[[], str]) -> iam.TokenResponse:
    """One cr-token grant: the token, and the profile in the form field its shape names."""
    log.remember_secret(cr_token)
    # No client credentials: IAM issues no refresh token to a trusted profile anyway.
    form = {"grant_type": iam.GRANT_CR_TOKEN, "cr_token": cr_token, profile_field(profile): profile}
    return iam.request_token(endpoint, form, basic=None, deadline_at=deadline_at, what=what)


def cache_key(identity: Identity, settings: Settings) -> str:
    # A token file is keyed by its path, not its content: Kubernetes rotates the file,
    # and each rotation stands for the same compute resource and profile.
    source = identity.secret or f"file:{identity.token_path}"
    return tokens.cache_key(iam.GRANT_CR_TOKEN, f"{source}\0{identity.profile or ''}",
                            identity.endpoint or settings.iam_endpoint)


def obtain(identity: Identity, settings: Settings, deadline_at: float) -> tokens.Token:
    """The profile's access token, from the shared cache or a fresh exchange."""
    endpoint = identity.endpoint or settings.iam_endpoint
    profile = identity.profile or ""
    key = cache_key(identity, settings)

    def fetch(_previous: tokens.Token | None) -> iam.TokenResponse:
        cr_token = identity.secret
        if identity.token_path is not None:
            # Read at each exchange, never earlier: the previous token may have expired.
            cr_token = read_cr_token(identity.token_path)
        return exchange(endpoint, cr_token, profile, deadline_at,
                        lambda: _("the compute-resource token from {origin} (trusted profile "
                                  "{profile})").format(origin=identity.describe(), profile=profile))

    return tokens.obtain(tokens.TokenCache(), key, fetch, deadline_at)
