"""How an adapter joins its concerns' parts (infra/clouds/adapter.py: WiringPart, compose):
plain data in, one StorageWiring out, and a clash between two concerns refused, not settled by
the order they were composed in."""

from __future__ import annotations

import pytest

from infra.clouds.adapter import WiringPart, compose

IDENTITY = WiringPart(wiring={"service_account_name": "ray-head"}, outputs={"role": "r"})


def test_parts_join_into_one_wiring_in_order() -> None:
    storage = compose(
        WiringPart(wiring={"env": (("A", "1"),)}),
        IDENTITY,
        WiringPart(
            wiring={"env": (("B", "2"),), "pod_annotations": {"x": "1"}}, outputs={"uri": "u"}
        ),
    )
    assert storage.wiring.service_account_name == "ray-head"
    assert storage.wiring.env == (("A", "1"), ("B", "2"))
    assert storage.wiring.pod_annotations == {"x": "1"}
    assert list(storage.outputs) == ["role", "uri"]


def test_a_field_storage_wiring_lacks_is_refused_where_the_part_is_made() -> None:
    with pytest.raises(TypeError, match="StorageWiring has no field shared_claim"):
        WiringPart(wiring={"shared_claim": "ray-shared"})


@pytest.mark.parametrize(
    ("other", "clash"),
    [
        (
            WiringPart(wiring={"service_account_name": "other"}),
            "StorageWiring.service_account_name",
        ),
        (WiringPart(outputs={"role": "other"}), "outputs['role']"),
    ],
)
def test_two_concerns_setting_one_thing_is_refused(other: WiringPart, clash: str) -> None:
    with pytest.raises(ValueError, match=f"two concerns set {clash}".replace("[", r"\[")):
        compose(IDENTITY, other)
