"""The input corpus, part three: file names (Unicode normalisation, spaces, scripts) and pairing messages.
Cases register into :data:`corpus_cases.CASES`.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from corpus_cases import CASES, GREY, LABELS, case
from corpus_files import Setup, folder_source, save_png

# --- file names -----------------------------------------------------------------------------------------


def named(root: Path, image_name: str, mask_name: str, *fragments: str) -> Setup:
    """images/<image_name> and masks/<mask_name>, paired when their ids agree (in NFC form)."""
    save_png(root / "images" / image_name, GREY)
    save_png(root / "masks" / mask_name, LABELS)
    source = folder_source()
    if fragments:
        return Setup(source, error=tuple(fragment.format(root=root) for fragment in fragments))
    sample_id = unicodedata.normalize("NFC", Path(image_name).stem)
    return Setup(source, images={sample_id: GREY}, masks={sample_id: LABELS})


NFC, NFD = unicodedata.normalize("NFC", "cellule-été"), unicodedata.normalize("NFD", "cellule-été")
NAMES = {
    "name-nfd-image-nfc-mask": (f"{NFD}.png", f"{NFC}.png"),
    "name-nfc-image-nfd-mask": (f"{NFC}.png", f"{NFD}.png"),
    "name-with-spaces": ("cell 01 (copy).png", "cell 01 (copy).png"),
    "name-greek-and-cjk": ("细胞_α-β.png", "细胞_α-β.png"),
    "name-emoji": ("\U0001f9a0 sample.png", "\U0001f9a0 sample.png"),
    "name-unpaired-lists-both-sides": (
        "a.png",
        "b.png",
        "1 image(s) have no mask",
        "{root}/images/a.png",
        "1 mask file(s) have no image",
        "{root}/masks/b.png",
    ),
    "name-ligature-differs-only-in-normalisation": (
        "\ufb01le.png",
        "file.png",
        "differ only in Unicode normalisation",
        "{root}/masks/file.png",
    ),
    "name-differs-only-in-case": ("Cell.png", "cell.png", "differ only in letter case"),
}
for _name, _names in NAMES.items():
    CASES[_name] = lambda root, names=_names: named(root, *names)


@case("name-nfc-and-nfd-spellings-in-one-folder")
def _two_spellings(root: Path) -> Setup:
    for name in (NFC, NFD):
        save_png(root / "images" / f"{name}.png", GREY)
        save_png(root / "masks" / f"{name}.png", LABELS)
    return Setup(folder_source(), error=("both have id", repr(NFC)))
