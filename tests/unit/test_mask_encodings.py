"""Mask encodings and instance labels against hand-computed arrays."""

import re

import numpy as np
import pytest

from segcore.data.mask_encodings import (
    encode_mask,
    instances_from_classes,
    instances_from_image,
    parse_encoding,
)
from segcore.io import InputError

ISBI = {"type": "value_table", "values": {0: 0, 255: 1}}


def test_value_table_isbi_255_is_cell_class_1():
    raw = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    mask = encode_mask(raw, parse_encoding(ISBI, 2), "labels/0.png")
    np.testing.assert_array_equal(mask, [[0, 1], [1, 0]])
    assert mask.dtype == np.uint8


def test_value_table_accepts_json_string_keys_and_16_bit_values():
    encoding = parse_encoding({"type": "value_table", "values": {"0": 0, "1000": 2, "65535": 1}}, 3)
    raw = np.array([[65535, 1000, 0]], dtype=np.uint16)
    np.testing.assert_array_equal(encode_mask(raw, encoding, "m.tif"), [[1, 2, 0]])


def test_undeclared_value_names_file_and_value():
    raw = np.array([[0, 255, 128]], dtype=np.uint8)
    with pytest.raises(InputError, match=r"labels/3\.png: mask value 128 is not declared"):
        encode_mask(raw, parse_encoding(ISBI, 2), "labels/3.png")


def test_classes_encoding():
    encoding = parse_encoding("classes", 3)
    raw = np.array([[0, 1, 2]], dtype=np.uint16)
    np.testing.assert_array_equal(encode_mask(raw, encoding, "m.png"), [[0, 1, 2]])
    with pytest.raises(InputError, match=r"m\.png: mask value 3 is not a class id \(expected 0\.\.2\)"):
        encode_mask(np.array([[0, 3]], dtype=np.uint8), encoding, "m.png")
    with pytest.raises(InputError, match="m.tif: mask value -1"):
        encode_mask(np.array([[0, -1]], dtype=np.int16), encoding, "m.tif")
    with pytest.raises(InputError, match="non-integer"):
        encode_mask(np.array([[0.5, 1.0]], dtype=np.float32), encoding, "m.tif")


def test_binary_encoding_with_and_without_threshold():
    raw = np.array([[0, 3, 127, 128, 250]], dtype=np.uint8)
    np.testing.assert_array_equal(encode_mask(raw, parse_encoding("binary", 2), "m"), [[0, 1, 1, 1, 1]])
    thresholded = parse_encoding({"type": "binary", "threshold": 127}, 2)
    np.testing.assert_array_equal(encode_mask(raw, thresholded, "m"), [[0, 0, 0, 1, 1]])


def test_colour_table_with_every_key_form_and_alpha_ignored():
    encoding = parse_encoding({"type": "colour_table", "colours": {"#000000": 0, "255,0,0": 1, (0, 0, 255): 2}}, 3)
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 1, :3] = (255, 0, 0)
    rgba[1, 0, :3] = (0, 0, 255)
    rgba[..., 3] = 17
    np.testing.assert_array_equal(encode_mask(rgba, encoding, "m.png"), [[0, 1], [2, 0]])


def test_colour_not_in_table_names_file_colour_and_first_pixel():
    encoding = parse_encoding({"type": "colour_table", "colours": {"#000000": 0, "#ff0000": 1}}, 2)
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[1, 2] = (7, 8, 9)
    rgb[2, 3] = (7, 8, 9)
    message = "masks/a.png: colour (7, 8, 9) at pixel (row 1, column 2) is not in the colour table"
    with pytest.raises(InputError, match=re.escape(message)):
        encode_mask(rgb, encoding, "masks/a.png")
    with pytest.raises(InputError, match="colour_table needs an RGB"):
        encode_mask(rgb[..., 0], encoding, "masks/a.png")


def test_grey_saved_as_rgb_is_accepted_but_colour_is_not():
    grey = np.array([[0, 255]], dtype=np.uint8)
    encoding = parse_encoding(ISBI, 2)
    np.testing.assert_array_equal(encode_mask(np.stack([grey] * 3, axis=-1), encoding, "m"), [[0, 1]])
    colour = np.stack([grey, grey, 255 - grey], axis=-1)
    with pytest.raises(InputError, match="m: mask has colour pixels"):
        encode_mask(colour, encoding, "m")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"type": "value_table", "values": {0: 0, 255: 2}},
            r"^config key src\.encoding\.values\[255\]: class id 2 is outside 0\.\.1",
        ),
        ({"type": "colour_table", "colours": {"#ff0000": 1, "255,0,0": 0}}, r"colours\['255,0,0'\]: listed twice"),
        ({"type": "value_table", "values": {7: 1, "7": 0}}, r"values\['7'\]: listed twice"),
    ],
)
def test_rules_spanning_keys_name_the_entry(config, message):
    """Class ids against dataset.classes, and one value or colour listed twice; the shape of the
    encoding itself is checked by config/schema.yaml (test_config_schema.py)."""
    with pytest.raises(InputError, match=message):
        parse_encoding(config, 2, "src.encoding")


CLASS_MASK = np.array(
    [
        [1, 1, 0, 2],
        [0, 0, 0, 2],
        [1, 0, 1, 0],
        [0, 1, 0, 0],
    ],
    dtype=np.uint8,
)


def test_connected_components_per_class_edge_neighbours():
    expected = np.array([[1, 1, 0, 5], [0, 0, 0, 5], [2, 0, 3, 0], [0, 4, 0, 0]])
    instances = instances_from_classes(CLASS_MASK, "m", connectivity=1)
    np.testing.assert_array_equal(instances, expected)
    assert instances.dtype == np.uint16


def test_connected_components_with_diagonals_and_ids_unique_across_classes():
    expected = np.array([[1, 1, 0, 3], [0, 0, 0, 3], [2, 0, 2, 0], [0, 2, 0, 0]])
    np.testing.assert_array_equal(instances_from_classes(CLASS_MASK, "m", connectivity=2), expected)
    # Touching objects of two different classes stay two objects.
    touching = np.array([[1, 1, 2, 2]], dtype=np.uint8)
    np.testing.assert_array_equal(instances_from_classes(touching, "m", connectivity=1), [[1, 1, 2, 2]])


def test_too_many_instances_for_uint16_is_an_input_error():
    checkerboard = (np.indices((512, 512)).sum(axis=0) % 2).astype(np.uint8)  # 131072 lone pixels
    with pytest.raises(InputError, match="m.png: 131072 instances exceed the uint16 limit"):
        instances_from_classes(checkerboard, "m.png", connectivity=1)


def test_instance_images_are_renumbered_in_value_order():
    raw = np.array([[0, 7, 7], [300, 0, 7]], dtype=np.int32)
    np.testing.assert_array_equal(instances_from_image(raw, "i.tif"), [[0, 1, 1], [2, 0, 1]])
    rgb = np.zeros((1, 3, 3), dtype=np.uint8)
    rgb[0, 1] = (0, 0, 9)  # packed 9
    rgb[0, 2] = (1, 0, 0)  # packed 65536
    np.testing.assert_array_equal(instances_from_image(rgb, "i.png"), [[0, 1, 2]])
    with pytest.raises(InputError, match="i.tif: instance ids must be >= 0, found -2"):
        instances_from_image(np.array([[0, -2]]), "i.tif")
    with pytest.raises(InputError, match="i.tif: instance ids must be integers"):
        instances_from_image(np.array([[0.0, 1.5]]), "i.tif")
