"""Defers to pyproject.toml (the one place the package is described), so that the commands Dassl and CoOp users
type keep working: ``pip install -e .`` and ``python setup.py develop``."""
from setuptools import setup

setup()
