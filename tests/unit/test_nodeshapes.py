import pytest

from mesoskube.cluster.nodeshapes import ShapeError, assign_shapes, node_manifest, parse_shape


def test_shape_overrides_defaults_and_reads_labels():
    s = parse_shape("cpu=16,memory=64Gi,gpu=2,label:zone=b")
    assert s.capacity["cpu"] == "16"
    assert s.capacity["nvidia.com/gpu"] == "2"
    assert s.capacity["ephemeral-storage"] == "100Gi"
    assert s.labels == {"zone": "b"}


@pytest.mark.parametrize(
    "bad,needle", [("cpu", "KEY=VALUE"), ("cpus=4", "unknown"), ("memory=lots", "quantity")]
)
def test_bad_shape_names_the_problem(bad, needle):
    with pytest.raises(ShapeError, match=needle):
        parse_shape(bad)


def test_shapes_dealt_round_robin():
    a, b = parse_shape("cpu=1"), parse_shape("cpu=2")
    assert [s.capacity["cpu"] for s in assign_shapes(5, [a, b])] == ["1", "2", "1", "2", "1"]


def test_fake_node_manifest_is_marked_for_kwok():
    m = node_manifest("n1", parse_shape("cpu=2"))
    assert m["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert m["spec"]["taints"][0]["key"] == "kwok.x-k8s.io/node"
    assert m["status"]["allocatable"]["cpu"] == "2"
