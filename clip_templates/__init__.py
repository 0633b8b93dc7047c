"""Hand-written CLIP prompt templates, kept as data (JSON) and validated on load.

- ``zeroshot.json``: one template per dataset (zero-shot CLIP, KgCoOp) and a 7-template ensemble;
- ``groups.json``: per-dataset hard-template lists partitioned into groups (MoCoOp's experts);
- ``lasp.json``: LASP's 35 templates for its text-to-text loss.
See ``clip_templates/README.md`` for the file format and where each list comes from.
"""
from __future__ import annotations

import json
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

_HERE = osp.dirname(osp.abspath(__file__))


def validate_template(template: str, source: str) -> str:
    """A template must contain exactly one ``{}`` (where the class name goes)."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f'{source}: template {template!r} must contain exactly one "{{}}"')
    return template


def _load(name: str) -> dict:
    path = osp.join(_HERE, name)
    with open(path) as f:
        return json.load(f)


def zeroshot_templates() -> Dict[str, str]:
    """Per-dataset single templates (CoOp's zero-shot / KgCoOp choice), keyed by DATASET.NAME."""
    data = _load("zeroshot.json")["CUSTOM_TEMPLATES"]
    return {k: validate_template(v, f"zeroshot.json:CUSTOM_TEMPLATES.{k}") for k, v in data.items()}


def imagenet_templates_select() -> List[str]:
    """The 7-template ensemble used by ZeroshotCLIP2."""
    return [validate_template(t, "zeroshot.json:IMAGENET_TEMPLATES_SELECT") for t in
            _load("zeroshot.json")["IMAGENET_TEMPLATES_SELECT"]]


def template_for(dataset_name: str) -> str:
    """The zero-shot template of ``dataset_name``, with an error listing the known datasets."""
    templates = zeroshot_templates()
    if dataset_name not in templates:
        raise KeyError(f'No zero-shot template for dataset "{dataset_name}"; known: {", ".join(sorted(templates))}')
    return templates[dataset_name]


# -- template groups (MoCoOp's experts) and LASP's list ------------------------------------------------------
GROUPS_FILE = osp.join(_HERE, "groups.json")
LASP_FILE = osp.join(_HERE, "lasp.json")
_ENTRY_KEYS = {"templates", "groups", "note"}


class TemplateFileError(ValueError):
    """A template or groups file that does not validate; the message names the file, the entry and the problem."""


@dataclass(frozen=True)
class TemplateGroups:
    """One dataset's hard templates (a flat list) and its partition into consecutive groups of ``sizes``."""

    dataset: str
    templates: Tuple[str, ...]
    sizes: Tuple[int, ...]

    @property
    def head_indices(self) -> List[int]:
        """Index of each group's first template: 0, g0, g0+g1, ..."""
        starts, total = [], 0
        for size in self.sizes:
            starts.append(total)
            total += size
        return starts

    @property
    def groups(self) -> List[List[str]]:
        return [list(self.templates[start:start + size]) for start, size in zip(self.head_indices, self.sizes)]

    @property
    def heads(self) -> List[str]:
        """The first template of every group (what each MoCoOp expert is initialised from)."""
        return [self.templates[i] for i in self.head_indices]


def check_template_text(template, where: str) -> str:
    """What every template in a groups or LASP file satisfies: a string with exactly one ``{}`` and no other brace
    (``str.format`` fills it), and normalised whitespace (no leading/trailing or repeated spaces: a double space is
    how the published Food101 list broke word-count-based context splitting)."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise TemplateFileError(f'{where}: template {template!r} must contain exactly one "{{}}"')
    rest = template.replace("{}", "", 1)
    if "{" in rest or "}" in rest:
        raise TemplateFileError(f'{where}: template {template!r} has a brace besides the one "{{}}"')
    if template != " ".join(template.split()):
        raise TemplateFileError(f"{where}: template {template!r} has leading/trailing or repeated whitespace; "
                                f"write it as {' '.join(template.split())!r}")
    return template


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"template file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise TemplateFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise TemplateFileError(f"{path}: the top level must be a JSON object, got {type(data).__name__}")
    return data


def _parse_entry(path: str, name: str, entry) -> TemplateGroups:
    where = f"{path}: dataset {name!r}"
    if not isinstance(entry, dict):
        raise TemplateFileError(f"{where}: expected an object with 'templates' and 'groups', "
                                f"got {type(entry).__name__}")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise TemplateFileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_ENTRY_KEYS)}")
    templates, sizes = entry.get("templates"), entry.get("groups")
    if not isinstance(templates, list) or not templates:
        raise TemplateFileError(f"{where}: 'templates' must be a non-empty list of strings")
    for i, template in enumerate(templates):
        check_template_text(template, f"{where}, template {i}")
    if not isinstance(sizes, list) or not sizes:
        raise TemplateFileError(f"{where}: 'groups' must be a non-empty list of group sizes")
    for g, size in enumerate(sizes):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise TemplateFileError(f"{where}: group {g} has size {size!r}; sizes must be integers >= 1")
    if sum(sizes) != len(templates):
        raise TemplateFileError(f"{where}: groups {sizes} cover {sum(sizes)} templates but the list has "
                                f"{len(templates)}; groups are consecutive runs that must cover the list exactly")
    return TemplateGroups(name, tuple(templates), tuple(sizes))


def _load_groups_file(path: str) -> Tuple[Dict[str, TemplateGroups], Dict[str, str]]:
    data = _read_json(path)
    unknown = sorted(set(data) - {"format", "aliases", "datasets"})
    if unknown:
        raise TemplateFileError(f"{path}: unknown top-level key(s) {unknown}; allowed: aliases, datasets, format")
    datasets = data.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise TemplateFileError(f"{path}: 'datasets' must be a non-empty object keyed by DATASET.NAME")
    entries = {name: _parse_entry(path, name, entry) for name, entry in datasets.items()}
    aliases = data.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise TemplateFileError(f"{path}: 'aliases' must be an object mapping a name to a dataset key")
    for alias, target in aliases.items():
        if target not in entries:
            raise TemplateFileError(f"{path}: alias {alias!r} points to {target!r}, which is not a dataset key")
    return entries, aliases


def load_template_groups(path: Optional[str] = None) -> Dict[str, TemplateGroups]:
    """Every dataset entry of a groups file (default: the shipped ``groups.json``), validated.

    The file is a JSON object ``{"datasets": {NAME: {"templates": [...], "groups": [sizes], "note": "..."}},
    "aliases": {alias: NAME}}`` (``aliases``, ``note`` and ``format`` optional); see ``clip_templates/README.md``.
    """
    return _load_groups_file(osp.abspath(path or GROUPS_FILE))[0]


def _normalise_name(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def resolve_groups_file(path: Optional[str]) -> str:
    """The groups file ``path`` names: the shipped ``groups.json`` for None/"", the path itself when it exists,
    else a file of that name in ``clip_templates/`` (so configs can say ``demo_groups.json`` from any folder)."""
    if not path:
        return GROUPS_FILE
    if osp.exists(path) or osp.isabs(path):
        return osp.abspath(path)
    shipped = osp.join(_HERE, path)
    return shipped if osp.exists(shipped) else osp.abspath(path)


def dataset_template_groups(dataset_name: str, path: Optional[str] = None) -> TemplateGroups:
    """The :class:`TemplateGroups` of ``dataset_name`` (DATASET.NAME such as "OxfordPets", or a config file stem
    such as "oxford_pets"/"dtd"; case, "_" and "-" are ignored) from ``path`` (default: ``groups.json``; see
    ``resolve_groups_file``)."""
    path = resolve_groups_file(path)
    entries, aliases = _load_groups_file(path)
    if dataset_name in entries:
        return entries[dataset_name]
    lookup = {_normalise_name(k): k for k in entries}
    lookup.update({_normalise_name(a): t for a, t in aliases.items()})
    key = lookup.get(_normalise_name(dataset_name))
    if key is None:
        raise KeyError(f'No template groups for dataset "{dataset_name}" in {path}; '
                       f'known: {", ".join(sorted(entries))}')
    return entries[key]


def template_groups(dataset_name: str, path: Optional[str] = None) -> List[List[str]]:
    """``dataset_name``'s template groups as lists of templates (consecutive runs of its hard-template list)."""
    return dataset_template_groups(dataset_name, path).groups


def group_heads(dataset_name: str, path: Optional[str] = None) -> List[str]:
    """The first template of each of ``dataset_name``'s groups."""
    return dataset_template_groups(dataset_name, path).heads


def lasp_templates(path: Optional[str] = None) -> List[str]:
    """LASP's 35 hand-crafted templates for its text-to-text loss (the same for every dataset), validated."""
    path = osp.abspath(path or LASP_FILE)
    data = _read_json(path)
    templates = data.get("LASP_TEMPLATES")
    if not isinstance(templates, list) or not templates:
        raise TemplateFileError(f"{path}: 'LASP_TEMPLATES' must be a non-empty list of strings")
    for i, template in enumerate(templates):
        check_template_text(template, f"{path}: LASP_TEMPLATES, template {i}")
    return list(templates)
