"""Fixtures for LabelTests: lme4's sleepstudy with subjects 308 and 309 relabelled as the
Latin-1 bytes caf\xe9 and caf\xe8 (not UTF-8), as a CSV and as an HDF5 file written by h5py
(variable-length byte strings, and fixed-length strings). Run from the repository root:
python3 bench/make_label_fixtures.py"""
import csv
import h5py
import numpy as np

rows = list(csv.DictReader(open("Tests/MultilevelTests/Fixtures/sleepstudy.csv", newline="")))
relabel = {"308": b"caf\xe9", "309": b"caf\xe8"}
subjects = [relabel.get(r["Subject"], r["Subject"].encode()) for r in rows]

with open("Tests/MultilevelTests/Fixtures/sleepstudy_latin1.csv", "wb") as f:
    f.write(b'"Reaction","Days","Subject"\n')
    for r, s in zip(rows, subjects):
        f.write(b'%s,%s,"%s"\n' % (r["Reaction"].encode(), r["Days"].encode(), s))

with h5py.File("Tests/MultilevelTests/Fixtures/sleepstudy_latin1.h5", "w") as f:
    g = f.create_group("sleep")
    g["Reaction"] = np.array([float(r["Reaction"]) for r in rows])
    g["Days"] = np.array([float(r["Days"]) for r in rows])
    g.create_dataset("Subject", data=subjects, dtype=h5py.string_dtype(encoding="ascii"))
    g["SubjectFixed"] = np.array(subjects, dtype="S4")
