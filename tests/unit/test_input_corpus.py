"""The input corpus (corpus_cases.py): every case imports exactly the arrays written, or stops with an
InputError whose message names the file and the cause and leaves nothing behind."""

from pathlib import Path

import corpus_damage  # noqa: F401 - registers part two of the corpus
import corpus_names  # noqa: F401 - registers part three
import numpy as np
import pytest
from corpus_cases import CASES

from segcore.config_schema import with_defaults
from segcore.data.canonical import read_manifest, read_sample
from segcore.data.importers import import_dataset
from segcore.io import InputError

MIN_CASES = 60


def test_the_corpus_is_large_enough():
    assert len(CASES) >= MIN_CASES


def run_case(setup, root: Path, dest: Path):
    if setup.action is not None:
        return setup.action(dest)
    return import_dataset(with_defaults("dataset.import", setup.source), root, dest, list(setup.classes))


@pytest.mark.parametrize("name", list(CASES))
def test_input_corpus(name, tmp_path):
    root = tmp_path / "input"
    root.mkdir()
    setup = CASES[name](root)
    dest = tmp_path / "out" / "canonical"
    if setup.error:
        with pytest.raises(InputError) as error:
            run_case(setup, root, dest)
        message = str(error.value)
        for fragment in setup.error:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        for fragment in setup.absent:
            assert fragment not in message, f"{fragment!r} in {message!r}"
        out = tmp_path / "out"
        assert not out.exists() or not list(out.iterdir()), "a failed import left files behind"
        return
    run_case(setup, root, dest)
    if setup.action is not None:
        return
    assert sorted(read_manifest(dest)["id"]) == sorted(setup.images)
    for sample_id, image in setup.images.items():
        sample = read_sample(dest, sample_id)
        assert sample.image.dtype == image.dtype and sample.image.shape == image.shape
        np.testing.assert_array_equal(sample.image, image)
        np.testing.assert_array_equal(sample.mask, setup.masks[sample_id])
