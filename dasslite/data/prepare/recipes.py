"""Dataset recipes as data: where each file comes from, how it is laid out under ``--root``, what a ready copy holds.

Sources (facts, not code):
- URLs, archive names, folder layouts and the Google Drive ids of the ``split_zhou_*.json`` / ``cat_to_name.json`` /
  ``classnames.txt`` / ``UCF-101-midframes.zip`` files: CoOp's DATASETS.md (the CoOp repository).
- ImageNet-A / ImageNet-R archive URLs: the READMEs of hendrycks/natural-adv-examples and hendrycks/imagenet-r.
- MD5 digests: only where torchvision publishes one for the very same file (Food-101, DTD, Flowers-102 images and
  labels, Oxford-IIIT Pets images and annotations, SUN397, EuroSAT on torchvision's pinned mirror). Every other file
  has no published digest here, so only its size (when the server announces one) is checked; nothing is made up.
- Per-split counts (train / val / test): the dataset table of the CoOp paper (Zhou et al., IJCV 2022); ImageNet-R's
  30,000 from its README; ImageNetV2 matched-frequency holds 10 images for each of 1,000 classes. No count is
  checked where none is published (ImageNet's train set, ImageNet-Sketch).
No download size is published for these files, so ``--list`` reports sizes on disk only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Mapping, Optional, Tuple

__all__ = ["Download", "Check", "Recipe", "RECIPES", "get_recipe", "drive_view_url"]


def drive_view_url(drive_id: str) -> str:
    """The page a person opens in a browser to fetch a Drive file by hand (the link CoOp's DATASETS.md gives)."""
    return f"https://drive.google.com/file/d/{drive_id}/view?usp=sharing"


@dataclass(frozen=True)
class Download:
    """One published file. ``extract`` maps archive members to places in the dataset folder; without it the file
    itself goes to ``dest`` (default: its name). A member ending in ``/*`` moves each child of that folder.
    ``copy_from`` (root-relative) is used instead of downloading when it exists (ImageNet's class-name file)."""

    name: str
    url: str = ""
    drive_id: str = ""
    md5: str = ""
    sha256: str = ""
    size: int = 0
    extract: Optional[Mapping[str, str]] = None
    dest: str = ""
    copy_from: str = ""

    @property
    def is_archive(self) -> bool:
        return self.extract is not None

    @property
    def source(self) -> str:
        """Where it is published: the URL, or the Drive page for a Drive id."""
        return self.url or drive_view_url(self.drive_id)

    @property
    def produces(self) -> Tuple[str, ...]:
        """Dataset-relative paths this step creates (for ``/*`` moves: the destination folder)."""
        if self.extract is None:
            return (self.dest or self.name,)
        return tuple(sorted({dest or "." for dest in self.extract.values()}))


@dataclass(frozen=True)
class Check:
    """One verification of a prepared dataset.

    kind ``split_json``: ``path`` is the split file, image paths are relative to ``prefix`` (dataset-relative);
    kind ``fgvc_lists``: ``images_variant_{split}.txt`` lines name ``images/<id>.jpg``;
    kind ``class_folders``: ``path`` holds one folder per class (``classes`` of them when > 0), its images counted
    under ``split``; ``open_images`` False counts files without opening them (ImageNet's 1.28M train images).
    """

    kind: str
    path: str = ""
    prefix: str = ""
    counts: Mapping[str, int] = field(default_factory=dict)
    classes: int = 0
    open_images: bool = True
    ignored: Tuple[str, ...] = ()
    split: str = "test"


@dataclass(frozen=True)
class Recipe:
    """Everything ``prepare`` needs for one dataset: its folder under the root, reader name, files and checks."""

    name: str
    dataset_dir: str
    reader: str
    downloads: Tuple[Download, ...]
    checks: Tuple[Check, ...]
    manual: str = ""  # instructions for files that cannot be downloaded for the user (licence)
    manual_paths: Tuple[str, ...] = ()  # dataset-relative paths the user must provide

    def relocated(self, mirror: str = "") -> "Recipe":
        """The same recipe with every non-Drive file fetched from ``mirror/<file name>`` (a local or institutional
        copy of the archives; digests and sizes still apply)."""
        if not mirror:
            return self
        base = mirror.rstrip("/")
        return replace(self, downloads=tuple(replace(d, url=f"{base}/{d.name}") if d.url else d
                                             for d in self.downloads))


# CoOp's Drive ids (DATASETS.md)
IMAGENET_CLASSNAMES = Download("classnames.txt", drive_id="1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF",
                               copy_from="imagenet/classnames.txt")
VGG = "https://www.robots.ox.ac.uk/~vgg/data"


def _splits(train: int, val: int, test: int) -> Dict[str, int]:
    return {"train": train, "val": val, "test": test}


def _split_check(split_file: str, prefix: str, counts: Dict[str, int]) -> Tuple[Check, ...]:
    return (Check("split_json", path=split_file, prefix=prefix, counts=counts),)


IMAGENET_MANUAL = (
    "ImageNet's licence does not allow downloading it for you. Sign in at https://image-net.org/download.php, "
    "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (or reuse a copy you have), and put them as\n"
    "  {dataset_dir}/images/train/<wnid>/*.JPEG   (1,000 class folders such as n01440764)\n"
    "  {dataset_dir}/images/val/<wnid>/*.JPEG     (the 50,000 validation images sorted into the same 1,000 folders)\n"
    "Symbolic links to an existing copy are fine; folders train/ and val/ placed directly in {dataset_dir} are "
    "moved into images/. Then run this command again: it fetches classnames.txt and verifies the layout."
)

SKETCH_MANUAL = (
    "ImageNet-Sketch is distributed through the links on https://github.com/HaohanWang/ImageNet-Sketch (no stable "
    "direct URL is published). Download ImageNet-Sketch.zip and extract it so that the class folders are\n"
    "  {dataset_dir}/images/<wnid>/*.JPEG   (1,000 folders)\n"
    "Then run this command again: it adds classnames.txt and verifies the layout."
)

_RECIPES = (
    Recipe("caltech101", "caltech-101", "Caltech101", (
        Download("101_ObjectCategories.tar.gz",
                 "http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
                 extract={"101_ObjectCategories": "101_ObjectCategories"}),
        Download("split_zhou_Caltech101.json", drive_id="1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
    ), _split_check("split_zhou_Caltech101.json", "101_ObjectCategories", _splits(4128, 1649, 2465))),
    Recipe("oxford_pets", "oxford_pets", "OxfordPets", (
        Download("images.tar.gz", f"{VGG}/pets/data/images.tar.gz", md5="5c4f3ee8e5d25df40f4fd59a7f44e54c",
                 extract={"images": "images"}),
        Download("annotations.tar.gz", f"{VGG}/pets/data/annotations.tar.gz", md5="95a8c909bbe2e81eed6a22bccdf3f68f",
                 extract={"annotations": "annotations"}),
        Download("split_zhou_OxfordPets.json", drive_id="1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
    ), _split_check("split_zhou_OxfordPets.json", "images", _splits(2944, 736, 3669))),
    Recipe("stanford_cars", "stanford_cars", "StanfordCars", (
        Download("cars_train.tgz", "http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
                 extract={"cars_train": "cars_train"}),
        Download("cars_test.tgz", "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
                 extract={"cars_test": "cars_test"}),
        Download("car_devkit.tgz", "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
                 extract={"devkit": "devkit"}),
        Download("cars_test_annos_withlabels.mat",
                 "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat"),
        Download("split_zhou_StanfordCars.json", drive_id="1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
    ), _split_check("split_zhou_StanfordCars.json", "", _splits(6509, 1635, 8041))),
    Recipe("oxford_flowers", "oxford_flowers", "OxfordFlowers", (
        Download("102flowers.tgz", f"{VGG}/flowers/102/102flowers.tgz", md5="52808999861908f626f3c1f4e79d11fa",
                 extract={"jpg": "jpg"}),
        Download("imagelabels.mat", f"{VGG}/flowers/102/imagelabels.mat", md5="e0620be6f572b9609742df49c70aed4d"),
        Download("cat_to_name.json", drive_id="1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),
        Download("split_zhou_OxfordFlowers.json", drive_id="1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
    ), _split_check("split_zhou_OxfordFlowers.json", "jpg", _splits(4093, 1633, 2463))),
    Recipe("food101", "food-101", "Food101", (
        # DATASETS.md names the page https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/ and food-101.tar.gz;
        # the file's own URL and MD5 are torchvision's.
        Download("food-101.tar.gz", "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
                 md5="85eeb15f3717b99a5da872d97d918f87", extract={"food-101/*": ""}),
        Download("split_zhou_Food101.json", drive_id="1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
    ), _split_check("split_zhou_Food101.json", "images", _splits(50500, 20200, 30300))),
    Recipe("fgvc_aircraft", "fgvc_aircraft", "FGVCAircraft", (
        Download("fgvc-aircraft-2013b.tar.gz", f"{VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                 extract={"fgvc-aircraft-2013b/data/*": ""}),
    ), (Check("fgvc_lists", counts=_splits(3334, 3333, 3333)),)),
    Recipe("sun397", "sun397", "SUN397", (
        Download("SUN397.tar.gz", "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                 md5="8ca2778205c41d23104230ba66911c7a", extract={"SUN397": "SUN397"}),
        # The partition lists are only needed to regenerate a split; their archive's inner layout is not documented,
        # so every top-level entry is kept in the dataset folder.
        Download("Partitions.zip", "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
                 extract={"*": ""}),
        Download("split_zhou_SUN397.json", drive_id="1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
    ), _split_check("split_zhou_SUN397.json", "SUN397", _splits(15880, 3970, 19850))),
    Recipe("dtd", "dtd", "DescribableTextures", (
        Download("dtd-r1.0.1.tar.gz", f"{VGG}/dtd/download/dtd-r1.0.1.tar.gz", md5="fff73e5086ae6bdbea199a49dfb8a4c1",
                 extract={"dtd/*": ""}),
        Download("split_zhou_DescribableTextures.json", drive_id="1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
    ), _split_check("split_zhou_DescribableTextures.json", "images", _splits(2820, 1128, 1692))),
    Recipe("eurosat", "eurosat", "EuroSAT", (
        # CoOp's DATASETS.md links http://madm.dfki.de/files/sentinel/EuroSAT.zip, which is no longer served;
        # torchvision's pinned mirror of the same archive (with its MD5) is used instead.
        Download("EuroSAT.zip", "https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                 "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip", md5="c8fa014336c82ac7804f0398fcb19387",
                 extract={"2750": "2750"}),
        Download("split_zhou_EuroSAT.json", drive_id="1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
    ), _split_check("split_zhou_EuroSAT.json", "2750", _splits(13500, 5400, 8100))),
    Recipe("ucf101", "ucf101", "UCF101", (
        Download("UCF-101-midframes.zip", drive_id="10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",
                 extract={"UCF-101-midframes": "UCF-101-midframes"}),
        Download("split_zhou_UCF101.json", drive_id="1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
    ), _split_check("split_zhou_UCF101.json", "UCF-101-midframes", _splits(7639, 1898, 3783))),
    Recipe("imagenet", "imagenet", "ImageNet", (IMAGENET_CLASSNAMES,), (
        Check("class_folders", path="images/train", classes=1000, open_images=False, split="train"),
        Check("class_folders", path="images/val", classes=1000, counts={"test": 50000}),
    ), manual=IMAGENET_MANUAL, manual_paths=("images/train", "images/val")),
    Recipe("imagenetv2", "imagenetv2", "ImageNetV2", (
        Download("imagenetv2-matched-frequency.tar.gz",
                 "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                 extract={"imagenetv2-matched-frequency-format-val": "imagenetv2-matched-frequency-format-val"}),
        IMAGENET_CLASSNAMES,
    ), (Check("class_folders", path="imagenetv2-matched-frequency-format-val", classes=1000,
              counts={"test": 10000}),)),
    Recipe("imagenet_sketch", "imagenet-sketch", "ImageNetSketch", (IMAGENET_CLASSNAMES,), (
        Check("class_folders", path="images", classes=1000),
    ), manual=SKETCH_MANUAL, manual_paths=("images",)),
    Recipe("imagenet_a", "imagenet-adversarial", "ImageNetA", (
        Download("imagenet-a.tar", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                 extract={"imagenet-a": "imagenet-a"}),
        IMAGENET_CLASSNAMES,
    ), (Check("class_folders", path="imagenet-a", classes=200, counts={"test": 7500}, ignored=("README.txt",)),)),
    Recipe("imagenet_r", "imagenet-rendition", "ImageNetR", (
        Download("imagenet-r.tar", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
                 extract={"imagenet-r": "imagenet-r"}),
        IMAGENET_CLASSNAMES,
    ), (Check("class_folders", path="imagenet-r", classes=200, counts={"test": 30000}, ignored=("README.txt",)),)),
)

RECIPES: Dict[str, Recipe] = {r.name: r for r in _RECIPES}
# Also accept the reader names and folder names users know (EuroSAT, caltech-101, ...).
_ALIASES = {**{r.reader.lower(): r.name for r in _RECIPES}, **{r.dataset_dir.lower(): r.name for r in _RECIPES}}


def get_recipe(name: str) -> Recipe:
    """The recipe for a dataset name (CLI name, reader class name or folder name, any case)."""
    key = name.lower()
    key = key if key in RECIPES else _ALIASES.get(key, key)
    if key not in RECIPES:
        import difflib

        close = difflib.get_close_matches(name.lower(), list(RECIPES) + list(_ALIASES), n=1)
        hint = f' Did you mean "{_ALIASES.get(close[0], close[0])}"?' if close else ""
        raise ValueError(f'unknown dataset "{name}".{hint} Known: {", ".join(RECIPES)}')
    return RECIPES[key]
