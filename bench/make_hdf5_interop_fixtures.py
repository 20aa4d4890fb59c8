"""Writes the HDF5 files of Tests/MultilevelTests/Fixtures/interop/ with the real writers.

pandas (PyTables) and h5py write sleepstudy (Tests/MultilevelTests/Fixtures/sleepstudy.csv)
in their layouts, so that a fit of each file can be compared with the fit of the CSV.
Run from the repository root: python3 bench/make_hdf5_interop_fixtures.py
(pandas, PyTables and h5py; the tests themselves need none of them).
"""
import os
import sys
import warnings

import h5py
import numpy as np
import pandas as pd

warnings.simplefilter("ignore")  # PyTables' performance warnings about object columns
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "MultilevelTests", "Fixtures")
out = os.path.join(root, "interop")
os.makedirs(out, exist_ok=True)

# round_trip: the same doubles as strtod, so a fit of each file equals the fit of the CSV to the last bit.
sleep = pd.read_csv(os.path.join(root, "sleepstudy.csv"), dtype={"Subject": str}, float_precision="round_trip")
sleep["Days"] = sleep["Days"].astype("int64")
sleep["late"] = sleep["Days"] >= 5                       # numpy bool
# Categories in an order that is not the sorted one, to show codes are mapped by name.
sleep["SubjectCat"] = pd.Categorical(sleep["Subject"], categories=sorted(sleep["Subject"].unique(), reverse=True))
sleep["SubjectNA"] = sleep["Subject"].where(~sleep.index.isin([3, 100]), None)  # two missing strings


def path(name):
    p = os.path.join(out, name)
    if os.path.exists(p):
        os.remove(p)
    return p


# pandas format="table", values packed in values_block_N, shuffle + zlib compressed.
sleep.to_hdf(path("pandas_table.h5"), key="df", format="table", index=False, complib="zlib", complevel=9)
# pandas format="table" with every column a data column (one member each).
sleep.to_hdf(path("pandas_datacolumns.h5"), key="df", format="table", data_columns=True, index=False,
             complib="zlib", complevel=9)  # compressed only to keep the file small
# pandas format="fixed": numbers and booleans in 2-D blocks; strings in pickled NumPy object arrays:
# two object columns share one block (SubjectStr with interned, so memoized, strings; SubjectObj with
# None at rows 3 and 100), and a pandas "str" column (missing as NaN) has a block of its own.
fixed = sleep[["Reaction", "Days", "late"]].copy()
fixed["Subject"] = sleep["Subject"].astype("int64")
fixed["SubjectStr"] = pd.Series([sys.intern(s) for s in sleep["Subject"]], dtype=object)
fixed["SubjectObj"] = pd.Series(list(sleep["SubjectNA"].astype(object).where(sleep["SubjectNA"].notna(), None)), dtype=object)
fixed["SubjectNA"] = sleep["SubjectNA"]
fixed.to_hdf(path("pandas_fixed.h5"), key="df", format="fixed", complib="zlib", complevel=9)
# pandas with blosc, a filter the system HDF5 library has no plugin for.
sleep[["Reaction", "Days"]].head(20).to_hdf(path("pandas_blosc.h5"), key="df", format="table", index=False,
                                            complib="blosc", complevel=5)

enum = h5py.enum_dtype
with h5py.File(path("h5py_types.h5"), "w") as f:
    g = f.create_group("data", track_order=True)
    g["Reaction"] = sleep["Reaction"].to_numpy()
    g["Days"] = sleep["Days"].to_numpy()
    g["Subject"] = sleep["Subject"].to_numpy().astype(object)          # variable-length strings
    g["late"] = sleep["late"].to_numpy()                              # numpy bool: enum FALSE/TRUE of int8
    subjects = sorted(sleep["Subject"].unique(), reverse=True)         # enum values not in name order
    g.create_dataset("SubjectEnum", data=np.array([subjects.index(s) + 1 for s in sleep["Subject"]], dtype="i4"),
                     dtype=enum({s: i + 1 for i, s in enumerate(subjects)}, basetype="i4"))
    # hdf5r's logical: FALSE 0, TRUE 1, NA 2; rows 0 and 1 NA.
    g.create_dataset("lateR", data=np.array([2, 2] + [int(x) for x in sleep["late"][2:]], dtype="i1"),
                     dtype=enum({"FALSE": 0, "TRUE": 1, "NA": 2}, basetype="i1"))
    g.create_dataset("DaysLZF", data=sleep["Days"].to_numpy(dtype="f8"), compression="lzf")

with h5py.File(path("h5py_nested.h5"), "w") as f:
    g = f.create_group("a/b", track_order=True)
    for column in ["Reaction", "Days"]:
        g[column] = sleep[column].to_numpy()
    g["Subject"] = sleep["Subject"].to_numpy().astype(object)
    f.create_group("empty")
    f["notes"] = np.array([[1.0, 2.0], [3.0, 4.0]])                 # 2-D: not a table

with h5py.File(path("h5py_misnamed.h5"), "w") as f:
    g = f.create_group("data", track_order=True)
    g["y"] = np.array([1.0, 2.0, 3.0, 4.0])
    g["matrix"] = np.zeros((4, 2))
    g["scalar"] = 1.5
    g["gone"] = h5py.SoftLink("/nowhere")
    codes = g.create_dataset("school", data=np.array([1, 2, -2147483648, 5], dtype="i4"))  # 5: no such level
    codes.attrs["levels"] = np.array([b"north", b"south"])
    g.create_dataset("colour", data=np.array([0, 1, 7, 0], dtype="i1"), dtype=enum({"red": 0, "blue": 1}, basetype="i1"))

for name in sorted(os.listdir(out)):
    print(name, os.path.getsize(os.path.join(out, name)))
