"""Turn an identity into what `get` answers, according to the mode.

auto:    API key → iamapikey (no network); refresh token → iamrefresh (refreshed on
         demand); access token → iambearer
refresh: API keys are exchanged at IAM for a refresh token → iamrefresh
bearer:  an IAM access token → iambearer
apikey:  never exchange; identities without an API key behave as in auto

Trusted profiles (compute-resource token, VPC instance identity) have no API key and
IAM gives them no refresh token, so every mode answers them with `iambearer`.
"""

from __future__ import annotations

import time

from docker_credential_icr import log, tokens
from docker_credential_icr.i18n import _
from docker_credential_icr.protocol import HelperError
from docker_credential_icr.settings import Settings
from docker_credential_icr.sources import APIKEY, BEARER, CR_TOKEN, OPAQUE, REFRESH, VPC, Identity
from docker_credential_icr.store import CredentialStore


class Answer:
    """What `get` answers, and until when that answer stays the one we would give.

    `fresh_until` (epoch seconds) is where a token enters its refresh window; None for
    secrets without a lifetime (API keys, stored opaque tokens). The kubelet provider
    turns it into cacheDuration so kubelet asks again before we would refresh.
    """

    __slots__ = ("fresh_until", "secret", "username")

    def __init__(self, username: str, secret: str, fresh_until: float | None = None) -> None:
        self.username = username
        self.secret = secret
        self.fresh_until = fresh_until


def answer(identity: Identity, settings: Settings, store: CredentialStore) -> tuple[str, str]:
    """(Username, Secret) for the `get` answer."""
    result = resolve(identity, settings, store)
    return result.username, result.secret


def resolve(identity: Identity, settings: Settings, store: CredentialStore,
            deadline_at: float | None = None) -> Answer:
    mode = settings.mode
    if identity.kind == OPAQUE:
        return Answer(identity.username or "<token>", identity.secret)
    if identity.kind == BEARER:
        secret = _unexpired_bearer(identity)
        expiry = tokens.jwt_expiry(secret)
        return Answer("iambearer", secret, None if expiry is None else expiry - tokens.EXPIRY_MARGIN)
    if identity.kind == APIKEY and mode in ("auto", "apikey"):
        return Answer("iamapikey", identity.secret)

    if deadline_at is None:
        deadline_at = time.monotonic() + settings.deadline
    if identity.kind in (CR_TOKEN, VPC):
        # Their modules (and iam's) load only here: `get` with a key never pays for them.
        if identity.kind == CR_TOKEN:
            from docker_credential_icr import crtoken as flow
        else:
            from docker_credential_icr import vpc as flow
        token = flow.obtain(identity, settings, deadline_at)
        return Answer("iambearer", token.access_token, _fresh_until(token))
    if identity.kind == APIKEY:
        token = _from_api_key(identity, settings, deadline_at)
    elif identity.kind == REFRESH:
        token = _from_refresh_token(identity, settings, store, deadline_at)
    else:
        raise HelperError(_("unsupported identity kind {kind}").format(kind=repr(identity.kind)))

    if mode == "bearer":
        return Answer("iambearer", token.access_token, _fresh_until(token))
    if not token.refresh_token:
        raise HelperError(_("IAM issued no refresh token for this identity; use "
                            "DOCKER_CREDENTIAL_ICR_MODE=bearer"))
    return Answer("iamrefresh", token.refresh_token, _fresh_until(token))


def _fresh_until(token: tokens.Token) -> float:
    # Past the refresh-window start a `get` would fetch a new token; before it, this one.
    start = token.expiration - tokens.REFRESH_FRACTION * token.expires_in
    if start > time.time():
        return start
    # A token served from cache while IAM is down: good only until it nearly expires.
    return token.expiration - tokens.EXPIRY_MARGIN


def _endpoint(identity: Identity, settings: Settings) -> str:
    return identity.endpoint or settings.iam_endpoint


def _from_api_key(identity: Identity, settings: Settings, deadline_at: float) -> tokens.Token:
    from docker_credential_icr import iam

    endpoint = _endpoint(identity, settings)
    cache = tokens.TokenCache()
    key = tokens.cache_key(iam.GRANT_APIKEY, identity.secret, endpoint)

    def fetch(_previous: tokens.Token | None) -> iam.TokenResponse:
        # bx:bx makes IAM issue a refresh token too, so one entry serves both modes.
        return iam.request_token(endpoint, {"grant_type": iam.GRANT_APIKEY, "apikey": identity.secret},
                                 basic=iam.CLI_CLIENT, deadline_at=deadline_at,
                                 what=lambda: _("the API key from {origin}").format(
                                     origin=identity.describe()))

    return tokens.obtain(cache, key, fetch, deadline_at)


def _from_refresh_token(identity: Identity, settings: Settings, store: CredentialStore,
                        deadline_at: float) -> tokens.Token:
    from docker_credential_icr import iam

    endpoint = _endpoint(identity, settings)
    cache = tokens.TokenCache()
    key = tokens.cache_key(iam.GRANT_REFRESH, identity.secret, endpoint)

    def fetch(previous: tokens.Token | None) -> iam.TokenResponse:
        # The newest refresh token we hold: IAM may have rotated the original one.
        refresh = (previous.refresh_token if previous and previous.refresh_token
                   else identity.secret)
        response = iam.request_token(endpoint, {"grant_type": iam.GRANT_REFRESH,
                                                "refresh_token": refresh},
                                     basic=iam.CLI_CLIENT, deadline_at=deadline_at,
                                     what=lambda: _("the refresh token from {origin}").format(
                                         origin=identity.describe()))
        if not response.refresh_token:
            response.refresh_token = refresh
        return response

    def rotated_key(token: tokens.Token) -> str | None:
        # A stored refresh token is replaced by its rotation (keep the newest), and the
        # cache is also filed under the new one so the next `get` finds it. The ibmcloud
        # CLI's file is never written: its rotations live in our cache only.
        if identity.stored_host is None or token.refresh_token in (None, identity.secret):
            return None
        if store.replace_secret(identity.stored_host, "iamrefresh", identity.secret,
                                token.refresh_token):
            log.info(f"saved the rotated refresh token for {identity.stored_host}")
        return tokens.cache_key(iam.GRANT_REFRESH, token.refresh_token, endpoint)

    return tokens.obtain(cache, key, fetch, deadline_at, also_key=rotated_key)


def _unexpired_bearer(identity: Identity) -> str:
    expiry = tokens.jwt_expiry(identity.secret)
    if expiry is not None and expiry <= time.time() + tokens.EXPIRY_MARGIN:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expiry))
        raise HelperError(
            _("the IAM access token {origin} expired at {when}; access tokens last "
              "about an hour — store an API key instead (docker login -u iamapikey) or set "
              "IBMCLOUD_API_KEY").format(origin=identity.describe(), when=when)
        )
    return identity.secret


def cached_token(identity: Identity, settings: Settings) -> tokens.Token | None:
    """The token `get` would reuse for this identity, read without any network (doctor)."""
    from docker_credential_icr import iam

    if identity.kind in (CR_TOKEN, VPC):
        if identity.kind == CR_TOKEN:
            from docker_credential_icr import crtoken as flow
        else:
            from docker_credential_icr import vpc as flow
        return tokens.TokenCache().read(flow.cache_key(identity, settings))
    grant = {APIKEY: iam.GRANT_APIKEY, REFRESH: iam.GRANT_REFRESH}.get(identity.kind)
    if grant is None:
        return None
    key = tokens.cache_key(grant, identity.secret, _endpoint(identity, settings))
    return tokens.TokenCache().read(key)
