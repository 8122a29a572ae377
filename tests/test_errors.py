"""The exceptions (nnbin/errors.py): every one nnbin exports is defined there, under
`NnbinError`, and is also the built-in kind it is. The bad inputs that raise them are tested
with the module that checks them (test_training, test_api, test_modelfile, test_cli,
test_files, test_data); the README's "Bad input" table names those tests."""

from __future__ import annotations

import nnbin


def test_every_exception_nnbin_exports_lives_in_errors_under_nnbinerror():
    import inspect

    from nnbin import errors

    exported = [getattr(nnbin, n) for n in nnbin.__all__]
    classes = [c for c in exported if inspect.isclass(c) and issubclass(c, BaseException)]
    assert {c.__name__ for c in classes} >= {
        "NnbinError",
        "DataFileError",
        "ModelFileError",
        "InvalidInputError",
        "UnknownBackendError",
        "BackendUnavailableError",
        "TrainingDivergedError",
        "MixedArraysError",
    }
    for cls in classes:
        assert cls.__module__ == errors.__name__ and issubclass(cls, errors.NnbinError), cls
    for cls in (nnbin.DataFileError, nnbin.ModelFileError, nnbin.InvalidInputError):
        assert issubclass(cls, ValueError)
