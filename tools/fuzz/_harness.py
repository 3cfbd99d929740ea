"""What the fuzz targets share: run one input, let the documented errors
through, and hand everything else to atheris as a crash."""
import os
import sys
import tempfile

# coverage feedback from these packages (the loaders' code and the libraries
# they drive); the rest of Python runs uninstrumented
INSTRUMENT = ["aslnet", "PIL", "h5py", "tflite", "flatbuffers"]


def scratch_dir():
    """A private folder for the files each input is written to (in memory
    where there is /dev/shm: the HDF5 and TFLite readers take paths)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return tempfile.mkdtemp(prefix="aslnet-fuzz-", dir=base)


def run(name, one_input, seeds, argv=None):
    """Fuzz ``one_input(data: bytes)`` from ``seeds`` (name -> bytes) with
    atheris; libFuzzer options (-max_total_time=60 ...) and corpus folders
    come from argv (the seeds are added to the first folder given, or to a
    new temporary one).  An exception ``one_input`` lets out is a crash:
    atheris prints its traceback, saves the input (-artifact_prefix) and
    exits non-zero."""
    import atheris

    from seeds import write_corpus
    argv = list(sys.argv if argv is None else argv)
    folders = [a for a in argv[1:] if not a.startswith("-")]
    if not folders:
        folders = [tempfile.mkdtemp(prefix=f"aslnet-fuzz-{name}-corpus-")]
        argv.append(folders[0])
    write_corpus(folders[0], seeds)
    # libFuzzer: corpus folders are the positional arguments; new inputs go to the first
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
