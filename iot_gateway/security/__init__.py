"""Security enforcement: the policy made real on Mosquitto, Kafka and HTTP.

The decision engine is :mod:`iot_gateway.policy` (pure); this package holds the state and
the side effects around it:

* :class:`SecretStore` - generated passwords of service principals (mode 0600);
* :class:`DeviceStore` - registered devices, password hashes only;
* :class:`TokenStore` - HTTP bearer tokens of api clients, digests only;
* :func:`effective_policy` - the policy file plus registered devices plus the admin;
* :class:`LocalCA` - the dev stack's certificate authority for TLS;
* :class:`SecuredStack` - applying it all to one dev stack (``iotctl policy apply``);
* :func:`bearer_auth` - aiohttp middleware: bearer token to principal, 401/403 as JSON;
* :func:`ingest_authorize` - the gateway's per-message hook: a device feeds only its own key.

Every error is a :class:`SecurityError`.
"""

from iot_gateway.security.credentials import Credential, SecretStore
from iot_gateway.security.devices import (
    DeviceStore,
    IssuedDevice,
    RegisteredDevice,
    check_device_id,
)
from iot_gateway.security.effective import (
    ADMIN,
    DEVICES_GROUP,
    credentialed_principals,
    effective_policy,
)
from iot_gateway.security.enforce import ApplyReport, BrokerSync, SecuredStack
from iot_gateway.security.errors import (
    ApplyError,
    DeviceError,
    InvalidIdError,
    NotSecureError,
    SecurityError,
    StoreError,
    TlsError,
    TokenError,
)
from iot_gateway.security.hooks import (
    IngestAuthorize,
    PolicyWatch,
    ingest_authorize,
    watched_ingest_authorize,
)
from iot_gateway.security.http import DECISION, PRINCIPAL, bearer_auth, default_scope
from iot_gateway.security.kafka import KafkaPlan, KafkaState
from iot_gateway.security.layout import SecurityLayout
from iot_gateway.security.tls import LocalCA, TlsFiles
from iot_gateway.security.tokens import IssuedToken, TokenInfo, TokenStore

__all__ = [
    "ADMIN",
    "DECISION",
    "DEVICES_GROUP",
    "PRINCIPAL",
    "ApplyError",
    "ApplyReport",
    "BrokerSync",
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
    "SecuredStack",
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
