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


# Numbers as YAML 1.2 writes them, which DVC reads params.yaml as (PyYAML reads YAML 1.1):
# - a number with an exponent and no dot (1e-3, 2E5) or no sign after the e (1.0e3) is a float; YAML 1.1 read it
#   as text, so `low: 1e-3` was refused as "not a valid number" while `dvc params diff` showed 0.001;
# - an integer with a leading zero is decimal: YAML 1.1 read `seed: 042` as octal 34, training silently on a seed
#   that `dvc params diff` showed as 42; `15:00` is text (YAML 1.1: 900, base 60); 0o17 is octal 15.
# Booleans too: YAML 1.2 has only true/false (any case DVC reads: true, True, TRUE); YAML 1.1 also read yes/no/on/off,
# so `log: yes` trained on a log scale that `dvc params diff` showed as the text "yes". As text, a flag refuses it.
_INT, _FLOAT, _BOOL = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_INT, _FLOAT, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# YAML 1.1's floats less its base-60 ones (`1:30.5` is 90.5 there, text in YAML 1.2), with a sign before a bare
# fraction (`+.5`), plus exponents without a dot.
_UniqueKeyLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                   |[-+]?\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)
_UniqueKeyLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
_UniqueKeyLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^[-+]?(?:0b_*[01][01_]*|0o_*[0-7][0-7_]*|0x_*[0-9a-fA-F][0-9a-fA-F_]*|[0-9][0-9_]*)$"),
    list("-+0123456789"),
)


def _integer(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    digits = text.lstrip("+-")
    base = {"0b": 2, "0o": 8, "0x": 16}.get(digits[:2].lower(), 10)
    return (-1 if text.startswith("-") else 1) * int(digits[2:] if base != 10 else digits, base)


_UniqueKeyLoader.add_constructor(_INT, _integer)


def load(text: str) -> Any:
    """``text`` as YAML (safe types only).

    Raises:
        DuplicateKey: a mapping holds a key twice (a ``yaml.YAMLError``, as every other error here).
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a subclass of the safe loader
