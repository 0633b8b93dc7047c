"""DataManager: dataset -> train/val/test loaders with Dassl's samplers, batch dicts and drop_last rule."""
from __future__ import annotations

import torch
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from .datasets import build_dataset
from .datasets.base_dataset import read_image
from .transforms import build_transform

SAMPLERS = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}


class DatasetWrapper(Dataset):
    """Turns a list of Datum into Dassl's batch dicts: ``img``, ``label``, ``domain``, ``impath``, ``index``."""

    def __init__(self, cfg, data_source, transform=None, is_train: bool = False) -> None:
        self.data_source = data_source
        self.transform = transform
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError(f"DATALOADER.K_TRANSFORMS={self.k_tfm} needs a transform")
        import torchvision.transforms as T
        self.to_tensor = T.Compose([T.Resize(tuple(cfg.INPUT.SIZE)), T.ToTensor()])

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict:
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._apply(tfm, img0)
        else:
            output["img"] = self._apply(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _apply(self, tfm, img0):
        imgs = [tfm(img0) for _ in range(self.k_tfm)]
        return imgs[0] if len(imgs) == 1 else imgs


def build_data_loader(cfg, sampler_type: str, data_source, batch_size: int, tfm=None, is_train: bool = True,
                      dataset_wrapper=None) -> DataLoader:
    """One loader; ``drop_last`` only when training on at least one full batch (Dassl's rule)."""
    if sampler_type not in SAMPLERS:
        raise ValueError(f'Sampler "{sampler_type}" is not supported; valid: {", ".join(SAMPLERS)}')
    wrapper = (dataset_wrapper or DatasetWrapper)(cfg, data_source, transform=tfm, is_train=is_train)
    loader = DataLoader(
        wrapper,
        batch_size=batch_size,
        sampler=SAMPLERS[sampler_type](data_source),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        persistent_workers=False,
    )
    if len(loader) == 0:
        raise ValueError(f"A {'train' if is_train else 'test'} loader has no batches (data has {len(data_source)} items)")
    return loader


class DataManager:
    """Builds the dataset named in the config and its loaders; exposes Dassl's attributes."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None) -> None:
        dataset = build_dataset(cfg)
        tfm_train = custom_tfm_train if custom_tfm_train is not None else build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test if custom_tfm_test is not None else build_transform(cfg, is_train=False)
        dl = cfg.DATALOADER
        self.train_loader_x = build_data_loader(cfg, dl.TRAIN_X.SAMPLER, dataset.train_x, dl.TRAIN_X.BATCH_SIZE,
                                                tfm=tfm_train, is_train=True, dataset_wrapper=dataset_wrapper)
        self.train_loader_u = None
        if dataset.train_u:
            self.train_loader_u = build_data_loader(cfg, dl.TRAIN_U.SAMPLER, dataset.train_u, dl.TRAIN_U.BATCH_SIZE,
                                                    tfm=tfm_train, is_train=True, dataset_wrapper=dataset_wrapper)
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(cfg, dl.TEST.SAMPLER, dataset.val, dl.TEST.BATCH_SIZE,
                                                tfm=tfm_test, is_train=False, dataset_wrapper=dataset_wrapper)
        self.test_loader = build_data_loader(cfg, dl.TEST.SAMPLER, dataset.test, dl.TEST.BATCH_SIZE,
                                             tfm=tfm_test, is_train=False, dataset_wrapper=dataset_wrapper)
        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        self.tfm_train, self.tfm_test = tfm_train, tfm_test
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict:
        return self._lab2cname

    def show_dataset_summary(self, cfg) -> None:
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))
