"""Security enforcement: the policy made real on Mosquitto, Kafka and HTTP.

The decision engine is :mod:`policy` (pure); this package holds the state and
the side effects around it:

* :class:`SecretStore` - generated passwords of service principals (mode 0600);
* :class:`DeviceStore` - registered devices, password hashes only;
* :class:`TokenStore` - HTTP bearer tokens of api clients, digests only;
* :func:`effective_policy` - the policy file plus registered devices plus the admin;
* :mod:`security.kafka`, :mod:`security.mosquitto` - what the policy means for each server;
* :class:`LocalCA` - the dev stack's certificate authority for TLS;
* :func:`bearer_auth` - aiohttp middleware: bearer token to principal, 401/403 as JSON;
* :func:`ingest_authorize` - the gateway's per-message hook: a device feeds only its own key.

Every error is a :class:`SecurityError`.
"""

from security.credentials import Credential, SecretStore
from security.devices import (
    DeviceStore,
    IssuedDevice,
    RegisteredDevice,
    check_device_id,
)
from security.effective import (
    DEVICES_GROUP,
    credentialed_principals,
    effective_policy,
)
from security.errors import (
    ApplyError,
    DeviceError,
    InvalidIdError,
    NotSecureError,
    SecurityError,
    StoreError,
    TlsError,
    TokenError,
)
from security.hooks import (
    IngestAuthorize,
    PolicyWatch,
    ingest_authorize,
    watched_ingest_authorize,
)
from security.http import DECISION, PRINCIPAL, bearer_auth, default_scope
from security.kafka import KafkaPlan, KafkaState
from security.layout import SecurityLayout
from security.tls import LocalCA, TlsFiles
from security.tokens import IssuedToken, TokenInfo, TokenStore

__all__ = [
    "DECISION",
    "DEVICES_GROUP",
    "PRINCIPAL",
    "ApplyError",
    "Credential",
    "DeviceError",
    "DeviceStore",
    "IngestAuthorize",
    "InvalidIdError",
    "IssuedDevice",
    "IssuedToken",
    "KafkaPlan",
    "KafkaState",
    "LocalCA",
    "NotSecureError",
    "PolicyWatch",
    "RegisteredDevice",
    "SecretStore",
    "SecurityError",
    "SecurityLayout",
    "StoreError",
    "TlsError",
    "TlsFiles",
    "TokenError",
    "TokenInfo",
    "TokenStore",
    "bearer_auth",
    "check_device_id",
    "credentialed_principals",
    "default_scope",
    "effective_policy",
    "ingest_authorize",
    "watched_ingest_authorize",
]
