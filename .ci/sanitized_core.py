"""pytest plugin for .ci/run's sanitizer pass: fails the run unless the
``aslnet._core`` under test is the sanitizer build (build/sanitize/lib), so
that an editable install or an in-place build cannot be tested instead
without anyone noticing."""
import os


def pytest_configure(config):
    import aslnet._core
    path = os.path.realpath(aslnet._core.__file__)
    want = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "build",
                                         "sanitize", "lib"))
    if not path.startswith(want + os.sep):
        raise RuntimeError(f"aslnet._core is {path}, not the sanitizer build under {want}: "
                           "put build/sanitize/lib first on PYTHONPATH and run pytest "
                           "with --import-mode=append")
    print(f"sanitizer build: {path}")
