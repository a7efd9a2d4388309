"""RobustBench's ImageNet-1k evaluation set: its fixed 5,000 validation images.

RobustBench evaluates every ImageNet model on the same 5,000 images of the ILSVRC-2012
validation set, listed (as ``WNID/ILSVRC2012_val_XXXXXXXX.JPEG``, in evaluation order) in
``robustbench/helper_files/imagenet_test_image_ids.txt``; labels are ImageNet-1k indices from
``imagenet_class_to_id_map.json`` (the sorted WNIDs). Both files are read from the installed
robustbench package (the ``[robustbench]`` extra) without importing it. The images come from
the user's ImageNet folder: ``ROOT/val/WNID/*.JPEG``.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

from mgbench.data.folders import PREPROCESSING, ClassListFolder
from mgbench.errors import InputError

IDS_FILE = "imagenet_test_image_ids.txt"
CLASS_MAP_FILE = "imagenet_class_to_id_map.json"


def robustbench_helper_file(name: str) -> Path:
    """A file of the installed robustbench's ``helper_files`` folder."""
    spec = importlib.util.find_spec("robustbench")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the imagenet1k dataset reads RobustBench's image list: pip install 'mgbench[robustbench]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "helper_files" / name
    if not path.is_file():
        raise InputError(f"the installed robustbench lacks {path}: reinstall robustbench==1.1.1")
    return path


@lru_cache(maxsize=None)
def robustbench_image_ids() -> tuple[str, ...]:
    """RobustBench's 5,000 ImageNet validation images, relative to ``val/``, in its order."""
    return tuple(line.strip() for line in robustbench_helper_file(IDS_FILE).read_text().splitlines() if line.strip())


@lru_cache(maxsize=None)
def imagenet1k_class_index() -> dict[str, int]:
    """WNID -> ImageNet-1k output index (RobustBench's map: the 1000 WNIDs in sorted order)."""
    return dict(json.loads(robustbench_helper_file(CLASS_MAP_FILE).read_text()))


class ListedImages(ClassListFolder):
    """The images ``root/<id>`` of a fixed id list (``WNID/file``), labelled by the WNID's
    ImageNet-1k index; items and bad-image handling as :class:`ClassListFolder`."""

    def __init__(self, root: Path, ids: list[str], preprocessing: str, on_bad_image: str = "fail"):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"data folder {root} does not exist: pass the ImageNet folder (with val/) as --data-root")
        if preprocessing not in PREPROCESSING:
            raise InputError(f"unknown preprocessing {preprocessing!r}: use one of {', '.join(PREPROCESSING)}")
        if on_bad_image not in ("skip", "fail"):
            raise InputError(f"--on-bad-image must be skip or fail, not {on_bad_image!r}")
        missing = [i for i in ids if not (root / i).is_file()]
        if missing:
            raise InputError(
                f"{root} lacks {len(missing)} of the {len(ids)} RobustBench images (first: {missing[0]}): "
                "point --data-root at the full ImageNet folder with val/WNID/*.JPEG"
            )
        index = imagenet1k_class_index()
        self.root = root
        self.samples = [(root / i, index[i.split("/", 1)[0]]) for i in ids]
        self.transform = PREPROCESSING[preprocessing]()
        self.on_bad_image = on_bad_image
