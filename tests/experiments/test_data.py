"""Reading the training table: every bad input is one clear error; schemas are inferred, not hard-coded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import UserError
from experiments.data import infer_schema, load_table, split
from serving.predictor import CATEGORICAL, NUMERIC, Predictor, Schema, SchemaError, records_from_frame


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("a,b,y\n", "no rows"),
    ("a,b\n1,2\n", "target column 'y' not found"),
    ("a,y\n1,2\n3,\n", "target 'y' is missing on line 3"),
    ("a,y\n1,2\n3,high\n", "target 'y' must be numeric; line 3 has 'high'"),
    ("a,b,y\n1,,2\n3,,4\n", "feature 'b' is entirely empty"),
    ("a,b,y\n1,x,2\nten,y,4\n", "feature 'a' mixes numbers and text"),
    ("y\n1\n2\n", "no feature columns"),
    ("a,y\n1,True\n2,False\n", "target 'y' must be numeric; line 2 has 'True'"),
    ("a,y\n1,2\n2,inf\n", "target 'y' has a non-finite number on line 3"),
    ("a,y\n1,2\n-inf,3\n", "feature 'a' has a non-finite number on line 3"),
    ("a,a,y\n1,2,3\n", r"duplicate column name\(s\) \['a'\]"),
    ("a, a,y\n1,2,3\n", r"duplicate column name\(s\) \['a'\]"),
    ("a,,y\n1,2,3\n", r"column 2 has no name in the header \(line 1\)"),
    ("a,b,y,\n1,2,3,\n4,5,6,\n", r"column 4 has no name in the header .*trailing comma"),
    ("a,b ,y\n1,2,3\n4,5,6\n", r"column name 'b ' ends in spaces in the header"),
    ("a,y\n1,2\n3,4,5\n", "not a readable CSV"),
    ("a,b,y\n1,2,3\n4\n5,6,7\n", r"line 3 has 1 value\(s\), but the header has 3 columns"),
    ("a,b,y\n1,2,3\n\n4,5\n", r"line 4 has 2 value\(s\), but the header has 3 columns"),
    ("a,b,y\n1,2,3,4\n5,6,7\n8,9,10\n", r"the first data line \(line 2\) has more values than the header"),
    # Past the csv module's field limit (128 KiB): its csv.Error was a traceback, in the header or in the
    # read for short rows (which runs when the last column has an empty cell)
    ("a," + "b" * 200_000 + ",y\n1,2,3\n", r"not a readable CSV \(line 1: field larger than field limit"),
    ("a,b,y\n" + "x" * 200_000 + ",2,3\n4,5,\n", r"not a readable CSV \(line 2: field larger than field limit"),
])
def test_bad_tables_are_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        load_table(_csv(tmp_path, text), "y")
    assert "\n" not in str(err.value)


def test_true_false_columns_with_blanks_are_categories(tmp_path: Path) -> None:
    table = load_table(_csv(tmp_path, "flag,y\nTrue,1\n,2\nFalse,3\n"), "y")
    schema = infer_schema(table, "y")
    (flag,) = schema.features
    assert (flag.kind, flag.levels, flag.nullable) == (CATEGORICAL, ("False", "True"), True)


def test_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.csv: data file not found \(run `dvc pull`"):
        load_table(tmp_path / "nope.csv", "y")


def test_too_few_rows_to_split() -> None:
    frame = pd.DataFrame({"a": range(5), "y": range(5)})
    with pytest.raises(UserError, match="too few rows to split: 5 rows, need at least"):
        split(frame, test_size=0.2, seed=1, min_train_rows=8)


def test_split_is_deterministic_and_disjoint() -> None:
    frame = pd.DataFrame({"a": range(100), "y": range(100)})
    train1, test1 = split(frame, test_size=0.2, seed=7, min_train_rows=8)
    train2, test2 = split(frame, test_size=0.2, seed=7, min_train_rows=8)
    assert test1["a"].tolist() == test2["a"].tolist()
    assert set(train1["a"]).isdisjoint(test1["a"])
    assert len(test1) == 20


def test_schema_is_inferred_from_a_differently_shaped_table(tmp_path: Path) -> None:
    """Given a housing-like CSV with other columns and target, the kinds and levels come from the data."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "rooms": rng.integers(1, 8, 50), "area_m2": rng.normal(80, 20, 50).round(1),
        "city": rng.choice(["Oslo", "Bergen"], 50), "garden": rng.choice(["yes", "no", None], 50),
        "price": rng.normal(3e6, 5e5, 50),
    })
    frame.to_csv(tmp_path / "h.csv", index=False)
    table = load_table(tmp_path / "h.csv", "price")
    schema = infer_schema(table, "price")
    kinds = {f.name: (f.kind, f.levels, f.nullable) for f in schema.features}
    assert kinds == {"rooms": (NUMERIC, (), False), "area_m2": (NUMERIC, (), False),
                     "city": (CATEGORICAL, ("Bergen", "Oslo"), False),
                     "garden": (CATEGORICAL, ("no", "yes"), True)}
    assert schema.columns == ["rooms", "area_m2", "city=Bergen", "city=Oslo", "garden=no", "garden=yes"]


def test_encoding_refuses_what_the_schema_does_not_allow(sample_csv: Path) -> None:
    table = load_table(sample_csv, "Exam_Score")
    schema = infer_schema(table, "Exam_Score")
    good = records_from_frame(table[schema.names].head(1))[0]
    cases = [
        ({k: v for k, v in good.items() if k != "Gender"}, "field 'Gender': missing feature"),
        (good | {"Shoe_Size": 42}, "field 'Shoe_Size': unknown feature"),
        (good | {"Hours_Studied": "ten"}, "field 'Hours_Studied': expected a number, got str"),
        (good | {"Hours_Studied": True}, "field 'Hours_Studied': expected a number, got bool"),
        (good | {"Hours_Studied": float("inf")}, "expected a finite number"),
        (good | {"Hours_Studied": 10**400}, "expected a finite number"),
        (good | {"Gender": "Robot"}, "field 'Gender': unknown category 'Robot'"),
        (good | {"Gender": None}, "field 'Gender': a value is required"),
        (good | {"Gender": 1}, "field 'Gender': expected a string, got int"),
    ]
    for record, message in cases:
        with pytest.raises(SchemaError, match=message) as err:
            schema.encode([good, record])
        assert err.value.row == 1
    assert schema.encode([good | {"Teacher_Quality": None}]).shape == (1, len(schema.columns))


def test_predictor_rejects_a_booster_of_another_schema(tmp_path: Path, sample_csv: Path) -> None:
    import xgboost as xgb

    from serving.layout import ModelError
    from serving.predictor import save_model_dir
    schema = infer_schema(load_table(sample_csv, "Exam_Score"), "Exam_Score")
    booster = xgb.train({"verbosity": 0}, xgb.DMatrix(np.zeros((4, 3)), label=np.zeros(4)), 1)
    save_model_dir(tmp_path, booster, schema)
    with pytest.raises(ModelError, match=f"booster expects 3 columns, schema encodes {len(schema.columns)}"):
        Predictor.from_dir(tmp_path)


def test_data_hash_is_dvcs_record_and_refuses_a_csv_changed_since_dvc_add(tmp_path: Path) -> None:
    import hashlib
    import json

    from core.lineage import dvc_data_hash
    csv = tmp_path / "data" / "t.csv"
    csv.parent.mkdir()
    csv.write_text("a,y\n1,2\n")
    own = hashlib.md5(csv.read_bytes(), usedforsecurity=False).hexdigest()
    manifest = tmp_path / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef.dir"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps([{"md5": own, "relpath": "t.csv"}]))
    dvc_file = tmp_path / "data.dvc"
    dvc_file.write_text("outs:\n- md5: abcdef.dir\n  path: data\n")

    assert dvc_data_hash(csv, dvc_file) == "abcdef.dir"
    csv.write_text("a,y\n1,3\n")
    with pytest.raises(UserError, match=r"t\.csv is not the version data\.dvc records: run `dvc add data`"):
        dvc_data_hash(csv, dvc_file)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("a,y\n1,2\n")
    assert dvc_data_hash(outside, dvc_file) == f"md5:{own}"


# --- tables a new user brings (issue 16): each refused in one line naming the column and the fix --------------

def _with_column(sample_csv: Path, tmp_path: Path, name: str, values: list[str]) -> Path:
    frame = pd.read_csv(sample_csv, dtype=str)
    frame.insert(0, name, values[:len(frame)])
    path = tmp_path / "with-column.csv"
    frame.to_csv(path, index=False)
    return path


def test_an_identifier_column_is_refused_naming_it_and_the_fix(sample_csv: Path, tmp_path: Path) -> None:
    rows = len(pd.read_csv(sample_csv))
    path = _with_column(sample_csv, tmp_path, "Student_Id", [f"S{i:05d}" for i in range(rows)])

    with pytest.raises(UserError, match=r"column 'Student_Id' looks like an identifier \(\d+ distinct") as err:
        load_table(path, "Exam_Score", max_categories=100)
    assert "data.ignore" in str(err.value) and "\n" not in str(err.value)


def test_an_ignored_identifier_is_dropped_unread(sample_csv: Path, tmp_path: Path) -> None:
    rows = len(pd.read_csv(sample_csv))
    path = _with_column(sample_csv, tmp_path, "Student_Id", [f"S{i:05d}" for i in range(rows)])

    table = load_table(path, "Exam_Score", ignore=("Student_Id",), max_categories=100)

    assert "Student_Id" not in table.columns
    assert list(table.columns) == list(pd.read_csv(sample_csv, nrows=1).columns)


def test_a_high_cardinality_category_is_refused(sample_csv: Path, tmp_path: Path) -> None:
    rows = len(pd.read_csv(sample_csv))
    path = _with_column(sample_csv, tmp_path, "Town", [f"town-{i % 150}" for i in range(rows)])

    with pytest.raises(UserError, match=r"'Town' has 150 categories, more than data.max_categories \(100\)"):
        load_table(path, "Exam_Score", max_categories=100)
    assert "Town" in load_table(path, "Exam_Score", max_categories=200).columns


def test_an_ignored_column_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data.ignore names 'Student_ID', which is not a column"):
        load_table(_csv(tmp_path, "a,y\n1,2\n3,4\n"), "y", ignore=("Student_ID",))


def test_a_constant_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="target 'y' is 7 on every row: there is nothing to learn"):
        load_table(_csv(tmp_path, "a,y\n1,7\n2,7\n3,7.0\n"), "y")


def test_a_target_constant_once_read_as_float32_is_refused(tmp_path: Path) -> None:
    # Distinct doubles, one float32: XGBoost would see one value and register a model with R² of about 0.
    with pytest.raises(UserError, match="target 'y' is 1 on every row once read as float32"):
        load_table(_csv(tmp_path, "a,y\n1,1.000000001\n2,1\n3,0.999999999\n"), "y")


@pytest.mark.parametrize(("text", "message"), [
    ("a,y\n1,2\n2,1e39\n", "target 'y' has 1e39 on line 3, beyond float32"),
    ("a,y\n1,2\n-4e38,3\n", "feature 'a' has -4e38 on line 3, beyond float32"),
    # Digits past 64 bits: pandas tries them as an integer and raised OverflowError before this was checked.
    ("a,y\n1,2\n" + "9" * 400 + ",3\n", "feature 'a' has a number of 400 characters on line 3, beyond float32"),
    ("a,y\n1,2\n2,-" + "9" * 400 + "\n", "target 'y' has a number of 401 characters on line 3, beyond float32"),
])
def test_numbers_beyond_float32_are_refused_naming_column_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_table(_csv(tmp_path, text), "y")


@pytest.mark.parametrize(("delimiter", "name"), [(";", "';'"), ("\t", "tab")])
def test_a_csv_with_another_delimiter_says_so(sample_csv: Path, tmp_path: Path, delimiter: str, name: str) -> None:
    path = tmp_path / "european.csv"
    pd.read_csv(sample_csv).to_csv(path, sep=delimiter, index=False, decimal=",")

    with pytest.raises(UserError, match=f"looks {name}-delimited .*save it as comma-separated CSV") as err:
        load_table(path, "Exam_Score")
    assert "\n" not in str(err.value)


def test_params_refuse_ignoring_the_target(tmp_path: Path, sample_csv: Path) -> None:
    from core.params import load_params
    from tests.conftest import write_params

    with pytest.raises(UserError, match="data: .*ignore lists the target 'Exam_Score'"):
        load_params(write_params(tmp_path, sample_csv, data={"ignore": ["Exam_Score"]}))
    with pytest.raises(UserError, match="data.max_categories: .*greater than or equal to 2"):
        load_params(write_params(tmp_path, sample_csv, data={"max_categories": 1}))


def test_a_level_spelled_like_a_missing_value_is_a_level_as_a_request_would_send_it(tmp_path: Path) -> None:
    # Given text levels pandas would read as missing ("NA" for North America, "None" for no disability)
    csv = tmp_path / "t.csv"
    rows = ["region,disability,hours,score", "NA,None,1,60", "EU,Some,NA,61", "APAC,,2,62", "NA,None,3,63",
            "EU,Some,4,64"]
    csv.write_text("\n".join(rows) + "\n")
    frame = load_table(csv, "score")
    schema = infer_schema(frame, "score")
    levels = {f.name: f.levels for f in schema.features if f.kind == CATEGORICAL}
    # Then they are levels, and only the empty cell is missing (as the container reads a CSV request)
    assert set(levels["region"]) == {"NA", "EU", "APAC"} and set(levels["disability"]) == {"None", "Some"}
    assert frame["disability"].isna().tolist() == [False, False, True, False, False]
    # And a number column's "NA" (as R writes a missing value) is still a missing number
    assert frame["hours"].dtype == np.float64 and frame["hours"].isna().tolist() == [False, True, False, False, False]
    records = records_from_frame(frame.drop(columns=["score"]))
    assert records[0]["region"] == "NA" and records[0]["disability"] == "None"


@pytest.mark.parametrize("cell", ["NA", "null", "nan", "None"])
def test_a_target_spelled_missing_is_named_with_its_line(tmp_path: Path, cell: str) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(f"x,score\n1,60\n2,{cell}\n3,62\n")
    with pytest.raises(UserError, match=r"target 'score' is missing on line 3$"):
        load_table(csv, "score")


def test_an_empty_last_cell_is_a_missing_value_not_a_short_row(tmp_path: Path) -> None:
    table = load_table(_csv(tmp_path, "y,a,b\n1,2,\n3,4,5\n5,, 6\n"), "y")
    assert table["b"].isna().tolist() == [True, False, False]
    assert table["a"].isna().tolist() == [False, False, True]


def test_a_numeric_feature_with_no_value_in_the_training_split_still_gives_a_loadable_schema(tmp_path: Path) -> None:
    # Given a mostly empty numeric column whose only value falls in the test split: the training split's mean of
    # it was NaN, saved as the feature's center, and the model then refused its own schema (a traceback, after
    # the search and with MLflow's parent run left FAILED)
    rows = "".join(f"{i},{'7' if i == 0 else ''},{i % 5}\n" for i in range(20))
    table = load_table(_csv(tmp_path, "a,rare,y\n" + rows), "y")
    train, test = table.iloc[1:], table.iloc[:1]
    assert train["rare"].isna().all() and test["rare"].notna().all()

    schema = infer_schema(table, "y", stats_from=train)

    rare = Schema.from_json(schema.to_json()).features[1]  # what the model directory is read back with
    assert (rare.name, rare.center, rare.scale, rare.nullable) == ("rare", 0.0, 1.0, True)


BOM = "\ufeff"  # Excel's "CSV UTF-8" starts the file with it; pandas drops it from the first column's name


@pytest.mark.parametrize(("header", "message"), [
    (",a,y", r"column 1 has no name in the header \(line 1\)"),  # a frame's index, saved with a BOM
    ("a,a,y", r"duplicate column name\(s\) \['a'\]"),
    ("a ,b,y", r"column name 'a ' ends in spaces"),
])
def test_a_byte_order_mark_hides_no_header_problem(tmp_path: Path, header: str, message: str) -> None:
    # The header was read with the mark kept: an unnamed first column became the feature "Unnamed: 0", a first
    # column written twice the feature "a.1"
    rows = "".join(f"{i},{i % 3},{i * 2}\n" for i in range(30))
    with pytest.raises(UserError, match=message) as err:
        load_table(_csv(tmp_path, BOM + header + "\n" + rows), "y")
    assert BOM not in str(err.value)


def test_a_table_with_a_byte_order_mark_reads_as_without_one(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 3},{i * 2}\n" for i in range(30))
    plain = load_table(_csv(tmp_path, "a,b,y\n" + rows), "y")
    marked = load_table(_csv(tmp_path, BOM + "a,b,y\n" + rows), "y")
    pd.testing.assert_frame_equal(marked, plain)


@pytest.mark.parametrize(("test_size", "message"), [
    (5e-324, r"data\.test_size 4\.94066e-324 would need over 1e15 rows"),  # it was an OverflowError traceback
    (1e-300, r"data\.test_size 1e-300 would need over 1e15 rows"),  # not a number of 301 digits
    (0.5, r"5 rows, need at least 8$"),
])
def test_a_test_share_too_small_for_any_table_is_one_short_line(test_size: float, message: str) -> None:
    frame = pd.DataFrame({"a": range(5), "y": range(5)})
    with pytest.raises(UserError, match=message) as err:
        split(frame, test_size=test_size, seed=0, min_train_rows=4)
    assert len(str(err.value)) < 160, str(err.value)
