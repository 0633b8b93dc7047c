"""Hand-written CLIP prompt templates, kept as data (JSON) and validated on load."""
from __future__ import annotations

import json
import os.path as osp
from typing import Dict, List

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
