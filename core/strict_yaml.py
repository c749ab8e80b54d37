"""Owns reading YAML the way DVC does: PyYAML's safe loader, with a key written twice in one mapping refused."""

from __future__ import annotations

import re
from typing import Any

import yaml


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping: PyYAML keeps the last silently, so a second
    ``mlflow:`` section would replace the first, while DVC refuses the same file ("YAML file structure is
    corrupted"), so ``dvc repro`` and the commands would disagree about it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base class names it
                break
            if repeated:
                raise DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# A number written with an exponent and no dot (1e-3, 2E5) or no sign after the e (1.0e3) is a float in YAML 1.2,
# which DVC reads params.yaml as; PyYAML's YAML 1.1 read it as text, so `low: 1e-3` was refused as "not a valid
# number" while `dvc params diff` showed 0.001.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load(text: str) -> Any:
    """``text`` as YAML (safe types only).

    Raises:
        DuplicateKey: a mapping holds a key twice (a ``yaml.YAMLError``, as every other error here).
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a subclass of the safe loader
