"""The offline demo world: a synthetic 10-class dataset in EuroSAT's exact on-disk layout and a tiny CLIP (OpenAI
state-dict format) pre-trained contrastively on captioned scenes from the same generator, built once per machine.

    from dasslite.demo import ensure_demo_world
    world = ensure_demo_world()          # ~/.cache/dasslite/demo/v1 (or $DASSLITE_DEMO_DIR), built on first use
    # train.py --root {world.root} ... MODEL.BACKBONE.NAME {world.clip_checkpoint}

``python -m dasslite.demo [--cache-dir D] [--force]`` builds it and prints both paths.
"""
from .recipe import CAPTION_TEMPLATES, EUROSAT_TEMPLATE, GENERATOR_VERSION, TEMPLATE_NOISE, DemoRecipe
from .scenes import CLASSNAMES, FOLDERS
from .world import (DemoWorld, build_world, default_cache_dir, ensure_demo_world, load_split_images, load_world,
                    read_split, world_dir_name, zero_shot_accuracy)

__all__ = [
    "ensure_demo_world", "DemoWorld", "DemoRecipe", "zero_shot_accuracy", "default_cache_dir", "build_world",
    "load_world", "world_dir_name", "read_split", "load_split_images",
    "FOLDERS", "CLASSNAMES", "EUROSAT_TEMPLATE", "CAPTION_TEMPLATES", "TEMPLATE_NOISE", "GENERATOR_VERSION",
]
