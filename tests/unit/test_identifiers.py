"""One device-id grammar: the gateway, the policy, the device registry and the query API
accept exactly the ids :mod:`contracts.identifiers` accepts."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from contracts.avro import SchemaCatalog
from contracts.identifiers import DEVICE_ID_MAX_LENGTH, FORBIDDEN_IN_IDS, device_id_problem
from iot_gateway.codecs import SubjectCodec
from iot_gateway.config import LimitSettings, RouteSettings
from iot_gateway.ingest import Ingest, Rejected
from iot_gateway.ratelimit import DeviceRateLimiter
from policy import PrincipalError, validate_principal_id
from security import InvalidIdError, check_device_id
from streams.query.errors import BadParameterError
from streams.query.params import check_device_id as check_query_device_id
from tests.fakes import InMemorySchemas

SUBJECT = "iot.telemetry.v1-value"
ROUTE = RouteSettings(
    name="telemetry", filter="devices/+/telemetry", kafka_topic="iot.telemetry.v1", subject=SUBJECT
)

ids = st.one_of(
    st.text(min_size=0, max_size=DEVICE_ID_MAX_LENGTH + 4),
    st.text(alphabet=st.sampled_from([*"abc-_.é0", *FORBIDDEN_IN_IDS, " ", "\t", "*"]), max_size=8),
)


@pytest.fixture(scope="module")
def ingest() -> Ingest:
    registered = InMemorySchemas().register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    limits = LimitSettings(device_rate_per_s=1e9, device_burst=10**9)
    limiter = DeviceRateLimiter(limits.device_rate_per_s, limits.device_burst, lambda: 0.0)
    return Ingest((ROUTE,), {SUBJECT: SubjectCodec(registered)}, limits, limiter)


def _accepted(check: object, value: str, error: type[Exception]) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except error:
        return False
    return True


@given(ids)
@example("sensor-1")
@example("d v")
@example("plant:7")
@example("a,b")
@example("*")
@example("x" * DEVICE_ID_MAX_LENGTH)
@example("x" * (DEVICE_ID_MAX_LENGTH + 1))
def test_every_component_accepts_exactly_the_device_ids_of_the_grammar(
    ingest: Ingest, device_id: str
) -> None:
    valid = device_id_problem(device_id) is None
    assert _accepted(check_device_id, device_id, InvalidIdError) is valid
    assert _accepted(check_query_device_id, device_id, BadParameterError) is valid
    if valid:
        validate_principal_id(device_id)  # a device logs in as itself
    if "/" not in device_id:  # a '/' makes another topic, routed (or not) on its own
        topic = f"devices/{device_id}/telemetry"
        result = ingest.process(topic, b'{"metrics": {"t": 1}}', 0)
        # a wildcard or NUL makes the whole topic name invalid before its levels are read
        refused = isinstance(result, Rejected) and result.reason in {
            "invalid_device_id",
            "invalid_topic",
        }
        assert refused is not valid, result


@given(ids)
def test_a_device_id_is_one_topic_level_and_a_principal_id(device_id: str) -> None:
    if device_id_problem(device_id) is None:
        assert not set("/+#") & set(device_id)
        assert device_id.strip() == device_id
        assert validate_principal_id(device_id) == device_id
    else:
        assert device_id_problem(device_id)


def test_a_principal_id_may_be_longer_than_a_device_id() -> None:
    long_id = "svc-" + "x" * DEVICE_ID_MAX_LENGTH
    assert validate_principal_id(long_id) == long_id
    assert device_id_problem(long_id) == f"must be at most {DEVICE_ID_MAX_LENGTH} characters"
    with pytest.raises(PrincipalError):
        validate_principal_id("bad id")
