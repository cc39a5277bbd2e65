"""The auth families' label values are exactly what the auth layer can return."""

from presence_b2b.metrics.catalog import AUTH_ALGORITHMS, AUTH_FAILURE_REASONS
from presence_b2b.shard.auth import RefusalReason
from presence_b2b.sip.digest import ALGORITHMS


def test_every_refusal_reason_is_a_failure_label_value() -> None:
    assert set(AUTH_FAILURE_REASONS.values) == {r.value for r in RefusalReason}


def test_every_supported_algorithm_is_a_label_value_besides_other() -> None:
    assert set(AUTH_ALGORITHMS.values) == {*ALGORITHMS, "other"}
