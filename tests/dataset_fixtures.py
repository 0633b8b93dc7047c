"""Builders of tiny dataset trees in the REAL on-disk layouts (8x8 images), one ``make_<dataset>_tree`` per reader.

Every builder takes the DATA root (``cfg.DATASET.ROOT``), writes ``<root>/<dataset folder>/...`` exactly as the
benchmark ships it (images, annotation files, optional ``split_zhou_*.json``) and returns the dataset folder.
The module-level ``*_CLASSNAMES`` lists are the class names the reader must produce, in label order.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import zlib
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

# EuroSAT folder -> class name the reader must produce (folders sorted = label order).
EUROSAT_FOLDERS = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake"]
EUROSAT_CLASSNAMES = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
                      "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings",
                      "River", "Sea or Lake"]
DTD_CLASSNAMES = ["banded", "braided", "bubbly"]
FOOD101_CLASSNAMES = ["apple_pie", "baby_back_ribs", "beignets"]
CALTECH101_FOLDERS = ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes"]
CALTECH101_CLASSNAMES = ["face", "leopard", "motorbike", "accordion", "airplane"]
PETS_BREEDS = ["Abyssinian", "american_bulldog", "Bengal"]  # class ids 1, 2, 3 (cats capitalised, as shipped)
PETS_CLASSNAMES = ["abyssinian", "american_bulldog", "bengal"]
FLOWERS_CAT_TO_NAME = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}
FLOWERS_CLASSNAMES = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
CARS_META = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Tesla Model S Sedan 2012"]
CARS_CLASSNAMES = ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Tesla Model S Sedan"]
AIRCRAFT_VARIANTS = ["707-320", "A300B4", "Cessna 172"]
SUN397_CLASS_PATHS = ["/a/abbey", "/b/bakery/shop", "/c/campus"]
SUN397_CLASSNAMES = ["abbey", "shop bakery", "campus"]
UCF101_ACTIONS = ["ApplyEyeMakeup", "Basketball", "YoYo"]
UCF101_CLASSNAMES = ["Apply_Eye_Makeup", "Basketball", "Yo_Yo"]
IMAGENET_CLASSES = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
                    ("n01491361", "tiger shark"), ("n01494475", "hammerhead shark")]


def write_image(path: str, size: int = 8, gray: bool = False) -> str:
    """Write a tiny image whose colour depends on its path (format from the extension); returns the path."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    h = zlib.crc32(path.encode())
    color = (h & 255, (h >> 8) & 255, (h >> 16) & 255)
    img = Image.new("L", (size, size), color[0]) if gray else Image.new("RGB", (size, size), color)
    fmt = "PNG" if path.lower().endswith(".png") else "JPEG"
    img.save(path, format=fmt)
    return path


def write_text(path: str, lines: Sequence[str]) -> str:
    """Write ``lines`` as a newline-terminated text file; returns the path."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def coop_cut(n: int, p_trn: float = 0.5, p_val: float = 0.2) -> Tuple[int, int]:
    """(n_train, n_val) of the lineage's 50/20/30 rule, for fixtures that write their own split files."""
    return round(n * p_trn), round(n * p_val)


def write_split_json(path: str, split: Dict[str, List[list]]) -> str:
    """Write a ``split_zhou_*.json`` with the lineage's formatting."""
    with open(path, "w") as f:
        json.dump(split, f, indent=4, separators=(",", ": "))
    return path


def _folder_tree(image_dir: str, folders: Sequence[str], n_per_class: int, stem: str = "{folder}_{i}") -> None:
    for folder in folders:
        for i in range(1, n_per_class + 1):
            write_image(osp.join(image_dir, folder, stem.format(folder=folder, i=i) + ".jpg"))


def make_eurosat_tree(root: str, n_per_class: int = 8, write_split: bool = True) -> str:
    """``<root>/eurosat/2750/<Class>/<Class>_<i>.jpg`` for the 10 classes, plus ``split_zhou_EuroSAT.json``.

    The split file (when ``write_split``) cuts each class's sorted images 50/20/30 in order (8 per class gives
    4 train / 2 val / 2 test) and stores the spelled-out class names, like the shipped file.
    """
    dataset_dir = osp.join(root, "eurosat")
    image_dir = osp.join(dataset_dir, "2750")
    _folder_tree(image_dir, EUROSAT_FOLDERS, n_per_class)
    if write_split:
        split: Dict[str, List[list]] = {"train": [], "val": [], "test": []}
        n_train, n_val = coop_cut(n_per_class)
        for label, (folder, cname) in enumerate(zip(EUROSAT_FOLDERS, EUROSAT_CLASSNAMES)):
            names = sorted(os.listdir(osp.join(image_dir, folder)))
            for i, name in enumerate(names):
                key = "train" if i < n_train else "val" if i < n_train + n_val else "test"
                split[key].append([f"{folder}/{name}", label, cname])
        write_split_json(osp.join(dataset_dir, "split_zhou_EuroSAT.json"), split)
    return dataset_dir


def make_dtd_tree(root: str, n_per_class: int = 10) -> str:
    """``<root>/dtd/images/<texture>/<texture>_<i>.jpg`` for 3 textures (no split file: the reader makes one)."""
    dataset_dir = osp.join(root, "dtd")
    _folder_tree(osp.join(dataset_dir, "images"), DTD_CLASSNAMES, n_per_class, stem="{folder}_{i:04d}")
    return dataset_dir


def make_food101_tree(root: str, n_per_class: int = 10) -> str:
    """``<root>/food-101/images/<dish>/<i>.jpg`` for 3 dishes (no split file)."""
    dataset_dir = osp.join(root, "food-101")
    _folder_tree(osp.join(dataset_dir, "images"), FOOD101_CLASSNAMES, n_per_class, stem="{i}")
    return dataset_dir


def make_caltech101_tree(root: str, n_per_class: int = 10) -> str:
    """``<root>/caltech-101/101_ObjectCategories/<class>/image_<i>.jpg`` incl. the two ignored folders."""
    dataset_dir = osp.join(root, "caltech-101")
    _folder_tree(osp.join(dataset_dir, "101_ObjectCategories"), CALTECH101_FOLDERS, n_per_class,
                 stem="image_{i:04d}")
    return dataset_dir


def make_oxford_pets_tree(root: str, n_trainval: int = 10, n_test: int = 3) -> str:
    """``<root>/oxford_pets/images/<Breed>_<i>.jpg`` + ``annotations/{trainval,test}.txt`` for 3 breeds."""
    dataset_dir = osp.join(root, "oxford_pets")
    trainval, test = [], []
    for class_id, breed in enumerate(PETS_BREEDS, start=1):
        species = 1 if breed[0].isupper() else 2
        for i in range(1, n_trainval + n_test + 1):
            write_image(osp.join(dataset_dir, "images", f"{breed}_{i}.jpg"))
            (trainval if i <= n_trainval else test).append(f"{breed}_{i} {class_id} {species} {class_id}")
    write_text(osp.join(dataset_dir, "annotations", "trainval.txt"), trainval)
    write_text(osp.join(dataset_dir, "annotations", "test.txt"), test)
    return dataset_dir


def make_oxford_flowers_tree(root: str, n_per_class: int = 10) -> str:
    """``<root>/oxford_flowers/jpg/image_NNNNN.jpg`` + ``imagelabels.mat`` (labels interleaved 2,1,3,...) +
    ``cat_to_name.json``."""
    from scipy.io import savemat

    dataset_dir = osp.join(root, "oxford_flowers")
    labels = [2, 1, 3] * n_per_class
    for i in range(len(labels)):
        write_image(osp.join(dataset_dir, "jpg", f"image_{i + 1:05d}.jpg"))
    savemat(osp.join(dataset_dir, "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    with open(osp.join(dataset_dir, "cat_to_name.json"), "w") as f:
        json.dump(FLOWERS_CAT_TO_NAME, f)
    return dataset_dir


def _cars_annos(path: str, labels: Sequence[int]) -> None:
    from scipy.io import savemat

    annos = np.zeros((1, len(labels)), dtype=[("bbox_x1", "O"), ("class", "O"), ("fname", "O")])
    for i, label in enumerate(labels):
        annos[0, i]["bbox_x1"] = np.array([[1]], dtype=np.uint8)
        annos[0, i]["class"] = np.array([[label]], dtype=np.uint8)
        annos[0, i]["fname"] = f"{i + 1:05d}.jpg"
    savemat(path, {"annotations": annos})


def make_stanford_cars_tree(root: str, n_train: int = 10, n_test: int = 3) -> str:
    """``<root>/stanford_cars/{cars_train,cars_test}/NNNNN.jpg`` + ``devkit/cars_{train_annos,meta}.mat`` +
    ``cars_test_annos_withlabels.mat`` for 3 models (names end with the year, as shipped)."""
    from scipy.io import savemat

    dataset_dir = osp.join(root, "stanford_cars")
    os.makedirs(osp.join(dataset_dir, "devkit"), exist_ok=True)
    for folder, n, anno in (("cars_train", n_train, osp.join("devkit", "cars_train_annos.mat")),
                            ("cars_test", n_test, "cars_test_annos_withlabels.mat")):
        labels = [1 + i % len(CARS_META) for i in range(n * len(CARS_META))]
        for i in range(len(labels)):
            write_image(osp.join(dataset_dir, folder, f"{i + 1:05d}.jpg"))
        _cars_annos(osp.join(dataset_dir, anno), labels)
    names = np.empty((1, len(CARS_META)), dtype=object)
    names[0, :] = CARS_META
    savemat(osp.join(dataset_dir, "devkit", "cars_meta.mat"), {"class_names": names})
    return dataset_dir


def make_fgvc_aircraft_tree(root: str, n_per_split: Tuple[int, int, int] = (3, 2, 2)) -> str:
    """``<root>/fgvc_aircraft/images/<id>.jpg`` + ``variants.txt`` + ``images_variant_{train,val,test}.txt``."""
    dataset_dir = osp.join(root, "fgvc_aircraft")
    write_text(osp.join(dataset_dir, "variants.txt"), AIRCRAFT_VARIANTS)
    image_id = 1000000
    for split, n in zip(("train", "val", "test"), n_per_split):
        lines = []
        for variant in AIRCRAFT_VARIANTS:
            for _ in range(n):
                image_id += 1
                write_image(osp.join(dataset_dir, "images", f"{image_id}.jpg"))
                lines.append(f"{image_id} {variant}")
        write_text(osp.join(dataset_dir, f"images_variant_{split}.txt"), lines)
    return dataset_dir


def make_sun397_tree(root: str, n_train: int = 10, n_test: int = 3) -> str:
    """``<root>/sun397/SUN397/<l>/<scene>[/<sub>]/sun_<i>.jpg`` + ``ClassName.txt``, ``{Training,Testing}_01.txt``."""
    dataset_dir = osp.join(root, "sun397")
    write_text(osp.join(dataset_dir, "ClassName.txt"), SUN397_CLASS_PATHS)
    train, test = [], []
    for class_path in SUN397_CLASS_PATHS:
        for i in range(n_train + n_test):
            rel = f"{class_path}/sun_{i:04d}.jpg"
            write_image(osp.join(dataset_dir, "SUN397", rel[1:]))
            (train if i < n_train else test).append(rel)
    write_text(osp.join(dataset_dir, "Training_01.txt"), train)
    write_text(osp.join(dataset_dir, "Testing_01.txt"), test)
    return dataset_dir


def make_ucf101_tree(root: str, n_train: int = 10, n_test: int = 3) -> str:
    """``<root>/ucf101/UCF-101-midframes/<Action_Name>/v_<Action>_gNN_c01.jpg`` + ``ucfTrainTestlist/*.txt``."""
    dataset_dir = osp.join(root, "ucf101")
    lists = osp.join(dataset_dir, "ucfTrainTestlist")
    write_text(osp.join(lists, "classInd.txt"), [f"{i} {a}" for i, a in enumerate(UCF101_ACTIONS, start=1)])
    train, test = [], []
    for label, (action, folder) in enumerate(zip(UCF101_ACTIONS, UCF101_CLASSNAMES), start=1):
        for g in range(1, n_train + n_test + 1):
            clip = f"v_{action}_g{g:02d}_c01"
            write_image(osp.join(dataset_dir, "UCF-101-midframes", folder, clip + ".jpg"))
            if g <= n_test:
                test.append(f"{action}/{clip}.avi")
            else:
                train.append(f"{action}/{clip}.avi {label}")
    write_text(osp.join(lists, "trainlist01.txt"), train)
    write_text(osp.join(lists, "testlist01.txt"), test)
    return dataset_dir


def _imagenet_classnames(dataset_dir: str, n_classes: int) -> List[Tuple[str, str]]:
    classes = IMAGENET_CLASSES[:n_classes]
    write_text(osp.join(dataset_dir, "classnames.txt"), [f"{w} {n}" for w, n in classes])
    return classes


def make_imagenet_tree(root: str, n_classes: int = 3, n_train: int = 6, n_val: int = 2) -> str:
    """``<root>/imagenet/images/{train,val}/<wnid>/*.JPEG`` + ``classnames.txt``."""
    dataset_dir = osp.join(root, "imagenet")
    for wnid, _ in _imagenet_classnames(dataset_dir, n_classes):
        for i in range(n_train):
            write_image(osp.join(dataset_dir, "images", "train", wnid, f"{wnid}_{i}.JPEG"))
        for i in range(n_val):
            write_image(osp.join(dataset_dir, "images", "val", wnid, f"ILSVRC2012_val_{wnid}_{i}.JPEG"))
    return dataset_dir


def make_imagenetv2_tree(root: str, n_classes: int = 3, n_per_class: int = 2) -> str:
    """``<root>/imagenetv2/imagenetv2-matched-frequency-format-val/<label>/*.jpeg`` + ``classnames.txt``."""
    dataset_dir = osp.join(root, "imagenetv2")
    _imagenet_classnames(dataset_dir, n_classes)
    for label in range(n_classes):
        for i in range(n_per_class):
            write_image(osp.join(dataset_dir, "imagenetv2-matched-frequency-format-val", str(label), f"{i}.jpeg"))
    return dataset_dir


def make_imagenet_sketch_tree(root: str, n_classes: int = 3, n_per_class: int = 2) -> str:
    """``<root>/imagenet-sketch/images/<wnid>/sketch_<i>.JPEG`` + ``classnames.txt``."""
    dataset_dir = osp.join(root, "imagenet-sketch")
    for wnid, _ in _imagenet_classnames(dataset_dir, n_classes):
        for i in range(n_per_class):
            write_image(osp.join(dataset_dir, "images", wnid, f"sketch_{i}.JPEG"))
    return dataset_dir


def _imagenet_subset_tree(dataset_dir: str, image_subdir: str, n_per_class: int) -> str:
    classes = _imagenet_classnames(dataset_dir, len(IMAGENET_CLASSES))
    for wnid, _ in classes[::2]:  # a subset of the 1000 classes, like the 200 of ImageNet-A/R
        for i in range(n_per_class):
            write_image(osp.join(dataset_dir, image_subdir, wnid, f"{i}.jpg"))
    write_text(osp.join(dataset_dir, image_subdir, "README.txt"), ["not a class"])
    return dataset_dir


# class names ImageNet-A / -R fixtures must produce (every other wnid of IMAGENET_CLASSES, relabelled 0..)
IMAGENET_SUBSET_CLASSNAMES = [name for _, name in IMAGENET_CLASSES[::2]]


def make_imagenet_a_tree(root: str, n_per_class: int = 2) -> str:
    """``<root>/imagenet-adversarial/imagenet-a/<wnid>/*.jpg`` (3 of the 5 classes) + README.txt + classnames."""
    return _imagenet_subset_tree(osp.join(root, "imagenet-adversarial"), "imagenet-a", n_per_class)


def make_imagenet_r_tree(root: str, n_per_class: int = 2) -> str:
    """``<root>/imagenet-rendition/imagenet-r/<wnid>/*.jpg`` (3 of the 5 classes) + README.txt + classnames."""
    return _imagenet_subset_tree(osp.join(root, "imagenet-rendition"), "imagenet-r", n_per_class)


def make_vtab_tree(root: str, task: str = "dtd", n_train: int = 8, n_test: int = 4, num_classes: int = 4) -> str:
    """``<root>/vtab-1k/<task>/images/*.jpg`` with the four lists (``relative/path label``), as VPT/NOAH ship it."""
    task_dir = osp.join(root, "vtab-1k", task)
    lines = {}
    for split, n in (("train800", n_train), ("val200", max(n_train // 4, 1)), ("test", n_test)):
        rows = []
        for i in range(n):
            rel = f"images/{split}/{i:04d}.jpg"
            write_image(osp.join(task_dir, rel))
            rows.append(f"{rel} {i % num_classes}")
        lines[split] = rows
    write_text(osp.join(task_dir, "train800.txt"), lines["train800"])
    write_text(osp.join(task_dir, "val200.txt"), lines["val200"])
    write_text(osp.join(task_dir, "train800val200.txt"), lines["train800"] + lines["val200"])
    write_text(osp.join(task_dir, "test.txt"), lines["test"])
    return task_dir
