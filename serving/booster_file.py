"""Owns checking a booster file before XGBoost's own reader is given it: UBJSON structure and tree indices.

XGBoost's C++ reader trusts what the file says. Measured on 400 randomly corrupted copies of a real
``booster.ubj`` (1-4 bytes changed each): 39 crashed the process with SIGSEGV — 8 inside ``load_model``, the
rest at the first prediction after a load that "succeeded" — where no ``except`` can catch it. A worker
would die in a restart loop; ``registry.export`` would die without a word. ``check`` refuses every one of
them: it decodes the file (lengths and counts must fit, nesting is bounded by ``MAX_DEPTH``, nothing may
follow the root object), then checks what prediction indexes with — every tree's arrays have ``num_nodes``
entries, children and parents point inside the tree, split features exist, leaves hold one value, categorical
splits' categories lie inside the tree's, each tree's output group and the iteration bounds fit the model — and
the linear booster's weights have the size its features and targets need.

The format is XGBoost's JSON model schema written as UBJSON (big-endian):
https://github.com/dmlc/xgboost/blob/master/doc/model.schema and https://ubjson.org/type-reference/.
Only the structure prediction depends on is checked; what the numbers mean is the self-test's job.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

MAX_DEPTH = 64  # a real booster nests about eight levels deep
_FIXED = {b"i": ">i1", b"U": ">u1", b"I": ">i2", b"l": ">i4", b"L": ">i8", b"d": ">f4", b"D": ">f8"}
# One value of each numeric marker; read with struct, a scalar costs a tenth of a numpy view of it.
_SCALARS = {marker: struct.Struct(">" + code) for marker, code in
            {b"i": "b", b"U": "B", b"I": "h", b"l": "i", b"L": "q", b"d": "f", b"D": "d"}.items()}
_EMPTY = {b"Z": None, b"N": None, b"T": True, b"F": False}
# Per-node arrays prediction reads; every one must have num_nodes entries.
NODE_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_conditions",
               "default_left", "base_weights")
ROOT_PARENT = 2**31 - 1  # XGBoost's "no parent" (kInvalidNodeId is -1 for children, INT_MAX for the root)


class MalformedBooster(ValueError):
    """The file is not a booster XGBoost could safely load; the message says what is wrong."""


class _Reader:
    """Reads UBJSON values from ``data`` at ``pos``: scalars with ``struct``, typed arrays as numpy views of ``data``."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def advance(self, size: int) -> int:
        """Move past ``size`` bytes; returns where they start."""
        start = self.pos
        if size < 0 or start + size > len(self.data):
            raise MalformedBooster(f"truncated at byte {start} (needs {size} more bytes)")
        self.pos = start + size
        return start

    def take(self, size: int) -> bytes:
        start = self.advance(size)
        return self.data[start:self.pos]

    def peek(self) -> bytes:
        return self.data[self.pos:self.pos + 1]

    def number(self, marker: bytes) -> Any:
        scalar = _SCALARS.get(marker)
        if scalar is None:
            raise MalformedBooster(f"byte {self.pos - 1}: expected a number, got marker {marker!r}")
        return scalar.unpack_from(self.data, self.advance(scalar.size))[0]

    def length(self) -> int:
        value = self.number(self.take(1))
        if not isinstance(value, int) or value < 0:
            raise MalformedBooster(f"byte {self.pos}: invalid length {value}")
        return value

    def text(self) -> str:
        try:
            return self.take(self.length()).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedBooster(f"byte {self.pos}: a string that is not UTF-8") from None

    def value(self, marker: bytes, depth: int) -> Any:
        if marker in _EMPTY:
            return _EMPTY[marker]
        if marker in (b"S", b"H", b"C"):
            return chr(self.take(1)[0]) if marker == b"C" else self.text()
        if marker in (b"{", b"["):
            if depth >= MAX_DEPTH:
                raise MalformedBooster(f"nested deeper than {MAX_DEPTH} levels")
            return self.container(marker == b"{", depth + 1)
        return self.number(marker)

    def container(self, is_object: bool, depth: int) -> Any:
        kind, count = None, None
        if self.peek() == b"$":
            self.take(1)
            kind = self.take(1)
            if kind not in _FIXED and kind not in _EMPTY:
                raise MalformedBooster(f"byte {self.pos - 1}: unsupported container type {kind!r}")
            if self.peek() != b"#":
                raise MalformedBooster(f"byte {self.pos}: a typed container needs a count")
        if self.peek() == b"#":
            self.take(1)
            count = self.length()
        if kind in _FIXED and not is_object:
            dtype = np.dtype(_FIXED[kind])
            start = self.advance(count * dtype.itemsize)
            return np.frombuffer(self.data, dtype=dtype, count=count, offset=start)
        items: list[Any] = []
        while count is None or len(items) < count:
            if count is None and self.peek() == (b"}" if is_object else b"]"):
                self.take(1)
                break
            key = self.text() if is_object else None
            item = self.value(kind if kind is not None else self.take(1), depth)
            items.append((key, item) if is_object else item)
        return dict(items) if is_object else items


def decode(data: bytes) -> dict[str, Any]:
    """The file as Python values (typed arrays as numpy arrays).

    Raises:
        MalformedBooster: not one well-formed UBJSON object.
    """
    reader = _Reader(data)
    if reader.peek() != b"{":
        raise MalformedBooster("does not start with a UBJSON object")
    reader.take(1)
    model = reader.container(True, 1)
    if reader.pos != len(data):
        raise MalformedBooster(f"{len(data) - reader.pos} stray bytes after the model")
    return model


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            raise MalformedBooster(f"missing '{'.'.join(path)}'")
        obj = obj[key]
    return obj


def _count(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MalformedBooster(f"{what} is not a count: {value!r}") from None
    if number < 0:
        raise MalformedBooster(f"{what} is negative: {number}")
    return number


def _indices(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise MalformedBooster(f"{what} holds no integers")
    return array.astype(np.int64)


def _check_tree(tree: Any, index: int, n_features: int) -> None:
    n_nodes = _count(_get(tree, "tree_param", "num_nodes"), f"tree {index} num_nodes")
    if n_nodes < 1:
        raise MalformedBooster(f"tree {index} has no nodes")
    for name in NODE_ARRAYS:
        if len(_get(tree, name)) != n_nodes:
            raise MalformedBooster(f"tree {index}: {name} has {len(tree[name])} entries for {n_nodes} nodes")
    left = _indices(tree["left_children"], f"tree {index} left_children")
    right = _indices(tree["right_children"], f"tree {index} right_children")
    if (((left == -1) != (right == -1)) | (left < -1) | (left >= n_nodes) | (right < -1)
            | (right >= n_nodes)).any():
        raise MalformedBooster(f"tree {index}: children point outside the tree")
    # Every node is reached from the root at most once, so prediction can neither loop nor share a node.
    seen, todo, lefts, rights = set(), [0], left.tolist(), right.tolist()
    while todo:
        node = todo.pop()
        if node in seen:
            raise MalformedBooster(f"tree {index}: node {node} is reached twice (a cycle)")
        seen.add(node)
        if lefts[node] != -1:
            todo += (lefts[node], rights[node])
    parents = _indices(tree["parents"], f"tree {index} parents")
    if ((parents != ROOT_PARENT) & ((parents < 0) | (parents >= n_nodes))).any():
        raise MalformedBooster(f"tree {index}: parents point outside the tree")
    splits = _indices(tree["split_indices"], f"tree {index} split_indices")
    if ((splits < 0) | (splits >= max(n_features, 1))).any():
        raise MalformedBooster(f"tree {index}: split_indices name a feature the model does not have")
    # One value per leaf (a vector leaf reads size_leaf_vector values per node from base_weights).
    if _count(tree["tree_param"].get("size_leaf_vector", 0), f"tree {index} size_leaf_vector") > 1:
        raise MalformedBooster(f"tree {index}: vector leaves (size_leaf_vector > 1) are not served")
    _check_categories(tree, index, n_nodes)


def _check_categories(tree: Any, index: int, n_nodes: int) -> None:
    """Categorical splits index a flat ``categories`` array by per-node segment and size; each must lie inside it."""
    kinds = _indices(tree.get("split_type", np.zeros(n_nodes, np.int64)), f"tree {index} split_type")
    if len(kinds) != n_nodes or ((kinds != 0) & (kinds != 1)).any():
        raise MalformedBooster(f"tree {index}: split_type must be 0 or 1 for each of its {n_nodes} nodes")
    nodes, segments, sizes, categories = (
        _indices(tree.get(name, np.zeros(0, np.int64)), f"tree {index} {name}")
        for name in ("categories_nodes", "categories_segments", "categories_sizes", "categories"))
    if sorted(nodes.tolist()) != np.flatnonzero(kinds).tolist() or not len(nodes) == len(segments) == len(sizes):
        raise MalformedBooster(f"tree {index}: categorical splits and categories_nodes disagree")
    if ((segments < 0) | (sizes < 0) | (segments + sizes > len(categories))).any():
        raise MalformedBooster(f"tree {index}: a categorical split's categories lie outside the tree's")
    # XGBoost reads a category as a float and sizes a bit field by the largest: floats are exact below 2**24.
    if ((categories < 0) | (categories >= 2**24)).any():
        raise MalformedBooster(f"tree {index}: a category is negative or past 2**24")


def check(data: bytes) -> None:
    """Raise ``MalformedBooster`` unless ``data`` is a booster XGBoost can load and predict with safely."""
    learner = _get(decode(data), "learner")
    n_features = _count(_get(learner, "learner_model_param", "num_feature"), "num_feature")
    booster = _get(learner, "gradient_booster")
    name = _get(booster, "name")
    # Output groups: one per target or class (a weight column of the linear booster, a tree's tree_info).
    groups = max(1, _count(learner["learner_model_param"].get("num_target", 1), "num_target"),
                 _count(learner["learner_model_param"].get("num_class", 0), "num_class"))
    if name == "gblinear":
        weights = _get(booster, "model", "weights")
        if len(weights) != (n_features + 1) * groups:
            raise MalformedBooster(f"gblinear has {len(weights)} weights for {n_features} features")
        return
    if name not in ("gbtree", "dart"):
        raise MalformedBooster(f"unknown booster {name!r}")
    model = _get(booster, "gbtree", "model") if name == "dart" else _get(booster, "model")
    trees = _get(model, "trees")
    if not isinstance(trees, list) or _count(_get(model, "gbtree_model_param", "num_trees"),
                                             "num_trees") != len(trees):
        raise MalformedBooster("num_trees does not match the trees stored")
    tree_info = _indices(_get(model, "tree_info"), "tree_info")
    if len(tree_info) != len(trees) or ((tree_info < 0) | (tree_info >= groups)).any():
        raise MalformedBooster(f"tree_info must give each tree an output group below {groups}")
    bounds = _indices(model.get("iteration_indptr", [0, len(trees)]), "iteration_indptr")
    if len(bounds) < 1 or bounds[0] != 0 or bounds[-1] != len(trees) or (np.diff(bounds) < 0).any():
        raise MalformedBooster("iteration_indptr must rise from 0 to the number of trees")
    for index, tree in enumerate(trees):
        _check_tree(tree, index, n_features)
