"""Owns reading the training CSV: every cell as written, each column typed, what cannot train refused in one line."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from core.cli import UserError
from core.lineage import data_not_found
from serving.predictor import FLOAT32_MAX

# A text column whose values are (nearly) all distinct identifies rows rather than describing them: one-hot
# encoded it is as wide as the table, and every new row brings a value the model has never seen.
IDENTIFIER_SHARE = 0.9
IDENTIFIER_MIN_ROWS = 20


# Only an empty cell is missing as the table is read, as in a CSV request to the container (serving/codecs.py):
# pandas would also read "NA", "None", "null", "nan" ... as missing, so a level spelled so (North America; no
# disability) vanished from training while requests sending it were refused as an unknown category.
CELLS_AS_WRITTEN: dict[str, Any] = {"skipinitialspace": True, "index_col": False, "keep_default_na": False,
                                    "na_values": [""]}
# How other tools write a missing number (R writes NA; pandas' own list, read_csv's na_values): missing in a
# column whose other cells are all numbers. In a text column they are levels like any other text.
MISSING_NUMBER_SPELLINGS = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                                      "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def load_table(path: Path, target: str, *, ignore: Sequence[str] = (), max_categories: int | None = None,
               ) -> pd.DataFrame:
    """Read a CSV and check it can train a regressor on ``target``.

    Every cell is read as text first, then each column becomes numeric only if all its non-empty cells are
    finite numbers; otherwise it is categorical text ("True"/"False" included, as a JSON request would send
    them). Columns named in ``ignore`` (``data.ignore``) are dropped unread. Line numbers in errors are the
    CSV's own (the header is line 1).

    Raises:
        UserError: missing or empty file, a file that looks ';'- or tab-delimited, a column without a name or
            with trailing spaces in it, a line with fewer values than the header, duplicate or missing columns,
            an ignored column that is not there, a missing or non-numeric target value, a constant target, an
            all-empty column, a column mixing numbers and text, a number that is not finite or beyond float32
            (what XGBoost trains in), an identifier-like text column, a text column with more than
            ``max_categories`` distinct values.
    """
    path = Path(path)
    if not path.is_file():
        raise data_not_found(path)
    header = _header(path)
    unnamed = [i for i, name in enumerate(header, 1) if not name]
    if unnamed:  # pandas would invent "Unnamed: N", a feature name every request would then have to send
        raise UserError(f"{path}: column {unnamed[0]} has no name in the header (line 1); name it, or remove the "
                        f"column (a trailing comma on each line makes one)")
    spaced = [name for name in header if name != name.rstrip()]
    if spaced:  # pandas keeps the trailing spaces: every request would have to send them too
        raise UserError(f"{path}: column name {spaced[0]!r} ends in spaces in the header (line 1); remove them")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise UserError(f"{path}: duplicate column name(s) {duplicated}")
    try:
        raw = _read_cells(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable CSV ({str(err).strip().splitlines()[-1]})") from None
    if raw.empty:
        raise UserError(f"{path}: the CSV has a header but no rows")
    if raw[raw.columns[-1]].isna().any():  # only a row whose last cell is empty can be one cut short
        _refuse_short_rows(path, len(header))
    _refuse_other_delimiters(path, list(raw.columns), target)
    absent = [name for name in ignore if name not in raw.columns]
    if absent:
        raise UserError(f"{path}: data.ignore names '{absent[0]}', which is not a column; columns are "
                        f"{list(raw.columns)}")
    raw = raw.drop(columns=list(ignore))
    if target not in raw.columns:
        raise UserError(f"{path}: target column '{target}' not found; columns are {list(raw.columns)}")
    if len(raw.columns) < 2:
        raise UserError(f"{path}: no feature columns besides the target '{target}'")
    frame = pd.DataFrame({column: _typed(raw[column], path, is_target=column == target)
                          for column in raw.columns})
    if frame[target].nunique() == 1:
        raise UserError(f"{path}: target '{target}' is {frame[target].iloc[0]:g} on every row: there is nothing "
                        f"to learn (and R² is undefined)")
    if np.unique(frame[target].to_numpy(dtype=np.float32)).size == 1:  # 1 ± 1e-9: one value to XGBoost
        raise UserError(f"{path}: target '{target}' is {frame[target].iloc[0]:g} on every row once read as float32 "
                        f"(what XGBoost trains in): there is nothing to learn")
    for column in frame.columns:
        if column != target and isinstance(frame[column].dtype, pd.CategoricalDtype):
            _refuse_unservable_categories(path, frame[column], max_categories)
    return frame


def _read_cells(path: Path) -> pd.DataFrame:
    """Every column as a categorical of its cells: the parser turns each distinct cell into one Python object,
    not each cell (a million rows of text as objects would hold ~60 bytes a cell, and their freed heap stays).

    The parser types the categories it reads: numbers become numbers (``_typed`` decides per column anyway),
    but "TRUE"/"true"/"True" would all become ``True``; such columns are read again as the text they hold.
    """
    with warnings.catch_warnings():
        # With index_col=False, pandas drops the extra values of a first data line longer than the header and
        # only warns ("a loss of data"); any later such line is a ParserError already.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            raw = pd.read_csv(path, dtype="category", **CELLS_AS_WRITTEN)
        except pd.errors.ParserWarning:
            raise pd.errors.ParserError("the first data line (line 2) has more values than the header has "
                                        "columns") from None
    booleans = [name for name in raw.columns if ptypes.is_bool_dtype(raw[name].cat.categories)]
    if booleans:
        text = pd.read_csv(path, dtype=str, usecols=booleans, **CELLS_AS_WRITTEN)
        raw[booleans] = text[booleans].astype("category")
    return raw


def _cell(path: Path, column: str, index: int) -> str:
    """The cell as written in the file (for an error message: the parser may have turned ``1e39`` into 1e+39)."""
    return pd.read_csv(path, dtype=str, usecols=[column], **CELLS_AS_WRITTEN)[column].iloc[index]


def _refuse_other_delimiters(path: Path, columns: list[str], target: str) -> None:
    if target in columns or len(columns) != 1:
        return
    for delimiter, name in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
        if delimiter in columns[0]:
            raise UserError(f"{path}: the file looks {name}-delimited (its header is one column, "
                            f"'{columns[0][:60]}'); save it as comma-separated CSV")


def _refuse_unservable_categories(path: Path, values: pd.Series, max_categories: int | None) -> None:
    """A text column that would make a model refusing every new row, or one as wide as the table."""
    present = values.dropna()
    distinct = present.nunique()
    if len(present) >= IDENTIFIER_MIN_ROWS and distinct >= IDENTIFIER_SHARE * len(present):
        raise UserError(f"{path}: column '{values.name}' looks like an identifier ({distinct} distinct values in "
                        f"{len(present)} rows): a model would refuse every new value; drop it from the CSV or "
                        f"list it under data.ignore in params.yaml")
    if max_categories is not None and distinct > max_categories:
        raise UserError(f"{path}: column '{values.name}' has {distinct} categories, more than data.max_categories "
                        f"({max_categories}): one column each, and any new value refused; list it under "
                        f"data.ignore in params.yaml, or raise data.max_categories")


def _refuse_short_rows(path: Path, width: int) -> None:
    """A line with fewer values than the header has columns: pandas would read the rest as missing values."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        try:
            next(reader, None)
            for row in reader:
                if 0 < len(row) < width:  # an empty line is skipped, as pandas skips it
                    raise UserError(f"{path}: line {reader.line_num} has {len(row)} value(s), but the header has "
                                    f"{width} columns (a row cut short; leave a cell empty for a missing value)")
        except csv.Error as err:  # a cell past the csv module's field limit (128 KiB)
            raise UserError(f"{path}: not a readable CSV (line {reader.line_num}: {err})") from None


def _header(path: Path) -> list[str]:
    # utf-8-sig: a byte order mark (Excel's "CSV UTF-8") is dropped, as pandas drops it; kept, it hid a first
    # column without a name ("Unnamed: 0" became a feature) and a first column written twice ("a.1").
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            first = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a readable CSV (not UTF-8 text)") from None
    except csv.Error as err:  # a header cell past the csv module's field limit (128 KiB)
        raise UserError(f"{path}: not a readable CSV (line 1: {err})") from None
    if not first:
        raise UserError(f"{path}: the CSV is empty")
    return [name.lstrip() for name in first]  # leading spaces go, as the table is read (skipinitialspace)


def _typed(values: pd.Series, path: Path, *, is_target: bool) -> pd.Series:
    """The column as numbers when every present cell is one, else as categorical text; refusing what cannot train.

    Each distinct cell is parsed once (a column of a million rows holds a few hundred distinct values at most,
    unless it is a measurement), and text columns become pandas categoricals: a million short strings as
    Python objects would cost ~60 bytes each, their codes one byte.
    """
    name = values.name
    what = f"target '{name}'" if is_target else f"feature '{name}'"
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cells = pd.Series(np.asarray(uniques, dtype=object))
    try:
        parsed = pd.to_numeric(cells, errors="coerce")
    except OverflowError:  # pandas reads a long run of digits as an integer, and gives up past 64 bits
        huge = np.array([_beyond_float32(u) for u in uniques])
        first = _first_index((codes >= 0) & huge[codes])
        raise UserError(f"{path}: {what} has a number of {len(str(uniques[codes[first]]))} characters on line "
                        f"{first + 2}, beyond float32 (±3.4e38), which XGBoost trains in") from None
    numeric = parsed.notna().to_numpy()
    spelled_missing = cells.isin(MISSING_NUMBER_SPELLINGS).to_numpy()
    if numeric.any() and spelled_missing.any() and (numeric | spelled_missing).all():
        codes = np.where(spelled_missing[codes], -1, codes)  # a number's missing cells, as another tool wrote them
        numeric = numeric | spelled_missing  # only present codes are read below
    present = codes >= 0
    if is_target and not present.all():
        raise UserError(f"{path}: {what} is missing on line {_first_line(~present)}")
    if not present.any():
        raise UserError(f"{path}: {what} is entirely empty")
    if numeric.all():
        as_float = np.where(spelled_missing, 0.0, parsed.to_numpy(dtype=np.float64))  # no cell has those codes
        finite = np.isfinite(as_float)
        if not finite.all():
            raise UserError(f"{path}: {what} has a non-finite number on line "
                            f"{_first_line(present & ~finite[codes])}")
        huge = np.abs(as_float) > FLOAT32_MAX
        if huge.any():
            first = _first_index(present & huge[codes])
            raise UserError(f"{path}: {what} has {_cell(path, name, first)} on line {first + 2}, beyond float32 "
                            f"(±3.4e38), which XGBoost trains in")
        if present.all() and ptypes.is_integer_dtype(parsed):
            return pd.Series(parsed.to_numpy()[codes], name=name)
        floats = parsed.to_numpy(dtype=np.float64)[codes]
        floats[~present] = np.nan
        return pd.Series(floats, name=name)
    text = present & ~numeric[codes]
    first_text = uniques[codes[_first_index(text)]]
    if is_target:
        raise UserError(f"{path}: {what} must be numeric; line {_first_line(text)} has '{first_text}'")
    if numeric.any():
        raise UserError(f"{path}: {what} mixes numbers and text (line {_first_line(present & numeric[codes])} is "
                        f"numeric, line {_first_line(text)} is '{first_text}')")
    categories = pd.Index(np.asarray(uniques, dtype=object))
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories), name=name)


def _beyond_float32(text: object) -> bool:
    try:
        return abs(float(str(text))) > FLOAT32_MAX
    except ValueError:
        return False


def _first_index(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _first_line(mask: np.ndarray) -> int:
    # +2: one for the header line, one because CSV line numbers start at 1.
    return _first_index(mask) + 2
