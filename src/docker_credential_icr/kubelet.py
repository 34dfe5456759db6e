"""`docker-credential-icr kubelet`: the kubelet image credential provider.

kubelet runs the configured executable with the `args` of its CredentialProviderConfig
(here: `kubelet`), writes a CredentialProviderRequest (credentialprovider.kubelet.k8s.io/v1)
on stdin and reads a CredentialProviderResponse from stdout:

    {"kind": "CredentialProviderResponse", "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
     "cacheKeyType": "Registry", "cacheDuration": "48m0s",
     "auth": {"us.icr.io": {"username": "iambearer", "password": "…"}}}

- `auth` is keyed by the registry host of the image, exactly as the image names it;
  an image on any other registry gets an empty `auth`.
- `cacheDuration` ends where our token enters its refresh window, so kubelet asks again
  just when a `get` would fetch a new token; an API key (`iamapikey`, no lifetime) is
  cached for APIKEY_CACHE_SECONDS so that a revoked or rotated key is noticed within the hour.
- With a `serviceAccountToken` (kubelet's tokenAttributes) and the service account's
  PROFILE_ANNOTATION naming a trusted profile, the pod's own token is exchanged at IAM
  (cr-token grant) for that profile: each workload pulls with its own identity. The
  answer then carries `serviceAccountTokenCacheType: ServiceAccount` (required by newer
  kubelets whenever a token was sent; older ones ignore unknown fields).
- A malformed request is a message on stderr and exit 1, with nothing on stdout.
"""

from __future__ import annotations

import json
import sys
import time

from docker_credential_icr import answer, log, settings, sources
from docker_credential_icr.hosts import ENTITLED_HOST, canonical_host, is_icr_host
from docker_credential_icr.i18n import _
from docker_credential_icr.protocol import MAX_REQUEST_BYTES, PROGRAM, HelperError
from docker_credential_icr.settings import Settings
from docker_credential_icr.store import CredentialStore

API_VERSION = "credentialprovider.kubelet.k8s.io/v1"
REQUEST_KIND = "CredentialProviderRequest"
RESPONSE_KIND = "CredentialProviderResponse"
# The service-account annotation that names the trusted profile a workload pulls as.
PROFILE_ANNOTATION = "icr.ibm.com/trusted-profile"
# An API key has no expiry; re-asking hourly bounds how long a revoked key stays cached.
APIKEY_CACHE_SECONDS = 3600


class RequestError(HelperError):
    """The request is not a CredentialProviderRequest we can answer."""


class Request:
    __slots__ = ("annotations", "image", "service_account_token")

    def __init__(self, image: str, service_account_token: str | None,
                 annotations: dict[str, str]) -> None:
        self.image = image
        self.service_account_token = service_account_token
        self.annotations = annotations


def parse_request(raw: bytes) -> Request:
    if len(raw) > MAX_REQUEST_BYTES:
        raise RequestError(_("request too large (more than {limit} bytes)").format(limit=MAX_REQUEST_BYTES))
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        # Never echo the input: it may carry a service-account token.
        raise RequestError(_("request is not valid JSON (expected a {kind})").format(
            kind=REQUEST_KIND)) from None
    if not isinstance(doc, dict):
        raise RequestError(_("request must be a JSON object (a {kind})").format(kind=REQUEST_KIND))
    token = doc.get("serviceAccountToken")
    if isinstance(token, str):
        log.remember_secret(token)
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != API_VERSION:
        raise RequestError(_("unsupported apiVersion {got}: set apiVersion: {expected} in the "
                             "CredentialProviderConfig").format(got=repr(str(api_version)[:80]),
                                                                expected=API_VERSION))
    if kind != REQUEST_KIND:
        raise RequestError(_("unexpected kind {got} (expected {expected})").format(
            got=repr(str(kind)[:80]), expected=REQUEST_KIND))
    image = doc.get("image")
    if not isinstance(image, str) or not image.strip():
        raise RequestError(_("request has no image"))
    if token is not None and not isinstance(token, str):
        raise RequestError(_("{field} must be a string").format(field="serviceAccountToken"))
    annotations = doc.get("serviceAccountAnnotations") or {}
    if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        raise RequestError(_("{field} must map strings to strings").format(field="serviceAccountAnnotations"))
    return Request(image.strip(), token or None, annotations)


def registry_of(image: str) -> str | None:
    """The registry host[:port] an image reference names, exactly as written.

    Kept as written (not lower-cased): kubelet matches `auth` keys against the image
    text part by part, and its Registry cache key is that same text.

    `us.icr.io/ns/app:tag`, `icr.io/ns/app@sha256:…`, `myreg:5000/app` name a registry;
    `nginx` and `library/nginx` are Docker Hub's (no dot, colon or `localhost` up front).
    """
    first, slash, _rest = image.partition("/")
    if not slash or not (("." in first) or (":" in first) or first == "localhost"):
        return None
    return first


def go_duration(seconds: float) -> str:
    """Whole seconds as Go's time.Duration prints them: `1h0m0s`, `48m0s`, `59s`, `0s`."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def cache_seconds(fresh_until: float | None) -> float:
    if fresh_until is None:
        return APIKEY_CACHE_SECONDS
    return max(fresh_until - time.time(), 0.0)


def encode_response(auth: dict[str, tuple[str, str]], cache_for: float,
                    service_account_token_sent: bool) -> str:
    doc: dict[str, object] = {
        "kind": RESPONSE_KIND,
        "apiVersion": API_VERSION,
        # kubelet's v1 API has Image, Registry and Global; the answer holds for the whole
        # registry. The per-service-account dimension is serviceAccountTokenCacheType below
        # (and tokenAttributes.cacheType in the kubelet's config), not a cacheKeyType.
        "cacheKeyType": "Registry",
        "cacheDuration": go_duration(cache_for),
    }
    if service_account_token_sent:
        # The IAM token stands for the profile named on the service account, not for one
        # pod, and outlives the pod's token: valid for every pod of that service account.
        doc["serviceAccountTokenCacheType"] = "ServiceAccount"
    doc["auth"] = {host: {"username": user, "password": secret} for host, (user, secret) in auth.items()}
    return json.dumps(doc, separators=(",", ":")) + "\n"


def _answer_with_service_account(request: Request, profile: str, cfg: Settings) -> tuple[str, str, float]:
    from docker_credential_icr import crtoken, tokens

    deadline_at = time.monotonic() + cfg.deadline
    # No disk cache here: kubelet caches per service account for cacheDuration, and a
    # cache keyed by profile alone would hand one workload's identity to another without
    # IAM checking its token against the profile's trust rule.
    response = crtoken.exchange(cfg.iam_endpoint, request.service_account_token or "", profile,
                                deadline_at,
                                lambda: _("the pod's service account token (trusted profile "
                                          "{profile})").format(profile=profile))
    fresh_until = response.expiration - tokens.REFRESH_FRACTION * response.expires_in
    return "iambearer", response.access_token, cache_seconds(fresh_until)


def respond(request: Request) -> str:
    sa_sent = request.service_account_token is not None
    profile = request.annotations.get(PROFILE_ANNOTATION, "").strip()
    if profile and not sa_sent:
        raise RequestError(
            _("the service account names trusted profile {profile} ({annotation}) but kubelet "
              "sent no serviceAccountToken: add tokenAttributes to the CredentialProviderConfig").format(
                profile=repr(profile), annotation=PROFILE_ANNOTATION)
        )
    registry = registry_of(request.image)
    cfg = settings.load()
    host = canonical_host(registry) if registry else None
    if registry is None or not is_icr_host(host, cfg.registries):
        log.debug(f"kubelet: {request.image[:200]!r} is not on an ICR host")
        # Nothing to cache: answering again costs nothing and a config change shows at once.
        return encode_response({}, 0, sa_sent)
    assert host is not None and registry is not None

    # The entitled registry never takes an IAM identity (see sources.find).
    if profile and host != ENTITLED_HOST:
        user, secret, cache_for = _answer_with_service_account(request, profile, cfg)
        log.debug(f"kubelet: {registry} answered as {user} for trusted profile {profile}")
        return encode_response({registry: (user, secret)}, cache_for, sa_sent)

    store = CredentialStore()
    identity = sources.find(host, cfg, store)
    if identity is None:
        log.warning(_("kubelet: no credentials for {host}; the pull goes without (see "
                      "docs/kubernetes.md: trusted profile, API key or docker login on the node)").format(
            host=host))
        return encode_response({}, 0, sa_sent)
    result = answer.resolve(identity, cfg, store)
    log.debug(f"kubelet: {registry} answered as {result.username} from {identity.origin}")
    return encode_response({registry: (result.username, result.secret)},
                           cache_seconds(result.fresh_until), sa_sent)


def main(args: list[str]) -> int:
    if args:
        sys.stderr.write(_("Usage: {program} kubelet  (kubelet image credential provider: request on "
                           "stdin)").format(program=PROGRAM) + "\n")
        return 1
    try:
        stdin = sys.stdin.buffer if sys.stdin is not None else None
        raw = stdin.read(MAX_REQUEST_BYTES + 1) if stdin is not None else b""
        out = respond(parse_request(raw))
    except HelperError as exc:
        return _fail(str(exc))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}")
    except Exception as exc:  # a bug: one line, never a traceback that could carry a token
        log.debug(f"kubelet: unexpected {type(exc).__name__}: {exc}")
        return _fail(_("internal error ({error}); rerun with DOCKER_CREDENTIAL_ICR_LOG=debug").format(
            error=type(exc).__name__))
    sys.stdout.write(out)
    sys.stdout.flush()
    return 0


def _fail(message: str) -> int:
    # kubelet logs the plugin's stderr; stdout stays empty so it cannot be mistaken for a response.
    sys.stderr.write(f"{PROGRAM} kubelet: {log.redact(message).replace(chr(10), ' ')}\n")
    sys.stderr.flush()
    return 1
