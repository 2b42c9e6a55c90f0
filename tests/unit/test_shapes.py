"""The embedded shapes dataset: reproducible to the byte, labels consistent."""

import hashlib

import numpy as np

from segcore.data.canonical import write_canonical
from segcore.data.shapes import generate_sample

NUM_CLASSES = 4  # background, circle, triangle, square


def folder_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_gives_byte_identical_files(tmp_path):
    for name in ("a", "b"):
        write_canonical(
            tmp_path / name, (generate_sample(11, i, size=64, max_objects=5) for i in range(6)), NUM_CLASSES
        )
    assert folder_digest(tmp_path / "a") == folder_digest(tmp_path / "b")
    write_canonical(tmp_path / "c", (generate_sample(12, i, size=64, max_objects=5) for i in range(6)), NUM_CLASSES)
    assert folder_digest(tmp_path / "a") != folder_digest(tmp_path / "c")


def test_sample_does_not_depend_on_generation_order():
    forward = [generate_sample(3, i, size=128, max_objects=5) for i in range(4)]
    backward = [generate_sample(3, i, size=128, max_objects=5) for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


def test_labels_are_consistent():
    for index in range(30):
        sample = generate_sample(5, index, size=128, max_objects=5)
        assert sample.image.shape == (128, 128, 3) and sample.image.dtype == np.uint8
        assert sample.mask.dtype == np.uint8 and set(np.unique(sample.mask)) <= {0, 1, 2, 3}
        assert np.array_equal(sample.mask > 0, sample.instances > 0)
        for instance_id in np.unique(sample.instances)[1:]:
            # every object has a single class
            assert len(np.unique(sample.mask[sample.instances == instance_id])) == 1


def test_all_classes_and_touching_objects_occur():
    samples = [generate_sample(9, i, size=128, max_objects=5) for i in range(60)]
    classes = set(np.concatenate([np.unique(s.mask) for s in samples]).tolist())
    assert classes == {0, 1, 2, 3}
    # two different instances adjacent somewhere (touching or overlapping objects)
    touching = 0
    for s in samples:
        left, right = s.instances[:, :-1], s.instances[:, 1:]
        touching += np.count_nonzero((left > 0) & (right > 0) & (left != right))
    assert touching > 0
