"""Resources: Mesos scalar arithmetic with three decimals, and port ranges."""

from __future__ import annotations

import pytest

from mesoskube.resources import (
    Resources,
    count_ports,
    format_ranges,
    normalize_ranges,
    parse_ranges,
    ranges_contain,
    subtract_ranges,
)

# ---------------------------------------------------------------- scalars


def test_addition_sums_scalars_and_merges_ports() -> None:
    a = Resources(cpus=1, mem=512, disk=100, gpus=1, ports=((31000, 31004),))
    b = Resources(cpus=0.5, mem=256, ports=((31005, 31009), (8080, 8080)))

    assert a + b == Resources(cpus=1.5, mem=768, disk=100, gpus=1, ports=((8080, 8080), (31000, 31009)))


def test_subtraction_clamps_at_zero_and_removes_ports() -> None:
    have = Resources(cpus=2, mem=1024, ports=((31000, 31010),))
    used = Resources(cpus=3, mem=24, gpus=1, ports=((31005, 31005),))

    assert have - used == Resources(cpus=0, mem=1000, gpus=0, ports=((31000, 31004), (31006, 31010)))


def test_scalars_keep_three_decimals() -> None:
    assert Resources(cpus=1.23456).cpus == 1.235
    assert Resources(cpus=0.1) + Resources(cpus=0.2) == Resources(cpus=0.3)
    assert Resources.total(Resources(cpus=0.001) for _ in range(1000)).cpus == 1.0
    assert Resources(cpus=0.3) - Resources(cpus=0.1) == Resources(cpus=0.2)


def test_contains_checks_every_scalar_and_the_ports() -> None:
    offer = Resources(cpus=2, mem=1024, ports=((31000, 31010),))

    assert offer.contains(Resources(cpus=2, mem=1024, ports=((31002, 31003),)))
    assert not offer.contains(Resources(cpus=2.001))
    assert not offer.contains(Resources(gpus=1))
    assert not offer.contains(Resources(ports=((31010, 31011),)))


def test_min_with_caps_scalars_and_keeps_ports() -> None:
    offer = Resources(cpus=8, mem=4096, gpus=2, ports=((31000, 31010),))

    capped = offer.min_with(Resources(cpus=2, mem=8192, disk=50))

    assert capped == Resources(cpus=2, mem=4096, disk=0, gpus=0, ports=((31000, 31010),))


def test_is_empty_counts_ports_as_something() -> None:
    assert Resources().is_empty()
    assert not Resources(ports=((80, 80),)).is_empty()
    assert not Resources(cpus=0.001).is_empty()
    assert Resources(cpus=0.0004).is_empty()


# ---------------------------------------------------------------- port ranges


def test_normalize_sorts_merges_adjacent_and_drops_empty_ranges() -> None:
    assert normalize_ranges([(5, 6), (1, 2), (3, 3), (10, 9), (8, 12), (11, 20)]) == ((1, 3), (5, 6), (8, 20))


def test_subtract_ranges_splits_and_trims() -> None:
    assert subtract_ranges([(31000, 32000)], [(31005, 31010)]) == ((31000, 31004), (31011, 32000))
    assert subtract_ranges([(31000, 31010)], [(30000, 31004), (31010, 40000)]) == ((31005, 31009),)
    assert subtract_ranges([(1, 5)], [(1, 5)]) == ()
    assert subtract_ranges([(1, 5)], [(7, 9)]) == ((1, 5),)


def test_ranges_contain() -> None:
    assert ranges_contain([(31000, 32000)], [(31000, 31000), (32000, 32000)])
    assert ranges_contain([(1, 3), (4, 6)], [(2, 5)])
    assert not ranges_contain([(1, 3), (5, 6)], [(2, 5)])
    assert ranges_contain([], [])


def test_parse_ranges() -> None:
    assert parse_ranges("31000-32000,8080") == ((8080, 8080), (31000, 32000))
    assert parse_ranges(" 1-2 , ,3-4") == ((1, 4),)
    assert parse_ranges("") == ()


def test_format_ranges_and_count_ports() -> None:
    ranges = ((8080, 8080), (31000, 31002))

    assert format_ranges(ranges) == "8080,31000-31002"
    assert format_ranges(()) == ""
    assert count_ports(ranges) == 4
    assert parse_ranges(format_ranges(ranges)) == ranges


# ---------------------------------------------------------------- messages and the CRD form


def test_shortfall_names_each_missing_resource() -> None:
    offer = Resources(cpus=1, mem=512, ports=((31000, 31010),))

    assert offer.shortfall(Resources(cpus=2.5, mem=256, ports=((8080, 8080), (31010, 31011)))) == {
        "cpus": "asked 2.5, offered 1",
        "ports": "asked 8080,31011 not in offered 31000-31010",
    }
    assert offer.shortfall(Resources(cpus=1, mem=512)) == {}


def test_shortfall_says_none_when_no_ports_were_offered() -> None:
    assert Resources(cpus=1).shortfall(Resources(ports=((80, 81),))) == {
        "ports": "asked 80-81 not in offered none"
    }


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            {"cpus": 1, "mem": 512, "ports": "31000-31010"},
            Resources(cpus=1, mem=512, ports=((31000, 31010),)),
        ),
        (
            {"gpus": 1, "ports": [8080, {"begin": 9000, "end": 9001}]},
            Resources(gpus=1, ports=((8080, 8080), (9000, 9001))),
        ),
        (None, Resources()),
        ({}, Resources()),
    ],
)
def test_from_mapping(mapping: dict[str, object] | None, expected: Resources) -> None:
    assert Resources.from_mapping(mapping) == expected


def test_to_mapping_leaves_out_zeros_and_round_trips() -> None:
    r = Resources(cpus=1.5, mem=0, disk=20, ports=((31000, 31001),))

    assert r.to_mapping() == {"cpus": 1.5, "disk": 20.0, "ports": "31000-31001"}
    assert Resources.from_mapping(r.to_mapping()) == r
    assert Resources().to_mapping() == {}


def test_str_is_short_and_readable() -> None:
    assert (
        str(Resources(cpus=0.5, mem=1024, ports=((31000, 31001),))) == "cpus:0.5;mem:1024;ports:[31000-31001]"
    )
    assert str(Resources()) == "(none)"
