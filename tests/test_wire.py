"""The plain-data protocol between the judge and the sandbox refuses what it must."""
import numpy as np
import pytest
from hw10kit.checks import wire


def test_arrays_round_trip_with_shape_and_dtype():
    msg = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.array(2.5), "n": [1, None, "x"]}
    back = wire.loads(wire.dumps(msg))
    assert back["a"].dtype == np.float32 and back["a"].shape == (2, 3) and np.array_equal(back["a"], msg["a"])
    assert back["s"].shape == () and float(back["s"]) == 2.5 and back["n"] == [1, None, "x"]


def test_many_small_messages_cannot_add_up_to_a_memory_bomb():
    zeros = wire.dumps({"z": np.zeros(wire.MAX_ELEMENTS // 4 + 1)})
    block = zeros.decode()[5:-2]  # the encoded array alone
    bomb = ("{\"zs\": [" + ",".join([block] * 5) + "]}").encode()
    with pytest.raises(wire.WireError, match="too large"):
        wire.loads(bomb)


def test_array_data_that_does_not_match_its_shape_is_refused():
    good = wire.dumps({"a": np.zeros(4)}).decode()
    with pytest.raises(wire.WireError):
        wire.loads(good.replace("[4]", "[5]"))


@pytest.mark.parametrize("line", [b"[1, 2]", b"not json", b'{"a": {"__nd__": ["object", [1], ""]}}'])
def test_off_protocol_messages_are_refused(line):
    with pytest.raises(wire.WireError):
        wire.loads(line)


def test_a_shape_whose_element_count_overflows_int64_is_refused():
    line = b'{"x": {"__nd__": ["float32", [4611686018427387904, 4611686018427387904, 4], ""]}}'
    with pytest.raises(wire.WireError):
        wire.loads(line)


def test_a_shape_with_a_zero_and_huge_dimensions_is_refused():
    line = b'{"x": {"__nd__": ["float32", [4611686018427387904, 4611686018427387904, 0], ""]}}'
    with pytest.raises(wire.WireError):
        wire.loads(line)


def test_a_dimension_too_large_for_an_integer_is_refused():
    line = b'{"x": {"__nd__": ["float32", [1e400], ""]}}'
    with pytest.raises(wire.WireError):
        wire.loads(line)
