"""Turn an identity into what `get` answers, according to the mode.

auto:    API key → iamapikey (no network); refresh token → iamrefresh; access token → iambearer
refresh: API keys are exchanged at IAM for a refresh token → iamrefresh
bearer:  an IAM access token → iambearer
apikey:  never exchange; identities without an API key behave as in auto
"""

from __future__ import annotations

from docker_credential_icr.protocol import HelperError
from docker_credential_icr.settings import Settings
from docker_credential_icr.sources import APIKEY, BEARER, OPAQUE, REFRESH, Identity


def answer(identity: Identity, settings: Settings) -> tuple[str, str]:
    """(Username, Secret) for the `get` answer."""
    if identity.kind == OPAQUE:
        return identity.username or "<token>", identity.secret
    mode = settings.mode
    if identity.kind == APIKEY and mode in ("auto", "apikey"):
        return "iamapikey", identity.secret
    if identity.kind == REFRESH and mode != "bearer":
        return "iamrefresh", identity.secret
    if identity.kind == BEARER:
        return "iambearer", identity.secret
    raise HelperError(
        f"mode {mode!r} needs IAM tokens, which this version cannot fetch yet; "
        "use DOCKER_CREDENTIAL_ICR_MODE=auto"
    )
