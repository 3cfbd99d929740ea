"""Run each fuzz target for a bounded time (CI: .ci/run).

    python tools/fuzz/run.py [--seconds 60] [--out DIR] [--fail-on-timeout] [target ...]

Targets: h5, tflite, image (tools/fuzz/fuzz_<target>.py; default all).  Fails
(exit 1) when a target crashes: an exception that is not one of its documented
errors, or a native crash; the input is saved in DIR (default
build/fuzz) as <target>-crash-<sha1> and the traceback printed.  An input
that runs past the per-input limit (--input-timeout, 5 s) is saved as
<target>-timeout-<sha1> and reported; the target then goes on from its grown
corpus for the rest of its time.  Timeouts fail the run only with
--fail-on-timeout.  (libhdf5 spins, crashes or exhausts memory on some
corrupt files: aslnet reads .h5 files in a child process first, with limits,
aslnet.saving.h5_probe, so those inputs give ModelFileError.)  A target that
hangs past its time plus 60 s is killed and reported as a timeout.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ("h5", "tflite", "image")


def fuzz(target, seconds, out, input_timeout):
    """Returns (crashes, timeouts): lists of saved inputs."""
    corpus = os.path.join(out, f"{target}-corpus")
    os.makedirs(corpus, exist_ok=True)
    crashes, timeouts = [], []
    deadline = time.monotonic() + seconds
    while True:
        left = int(deadline - time.monotonic())
        if left < 5:
            break
        before = set(os.listdir(out))
        cmd = [sys.executable, os.path.join(HERE, f"fuzz_{target}.py"),
               f"-max_total_time={left}", f"-timeout={input_timeout}", "-rss_limit_mb=4096",
               f"-artifact_prefix={os.path.join(out, target)}-", "-print_final_stats=1",
               corpus]
        try:    # a hard limit too: a target hung in a futex (libFuzzer's own timeout and
                # RSS handlers deadlocked once, at 4 GB) must not hang CI
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", timeout=left + 60)
        except subprocess.TimeoutExpired:
            timeouts.append(f"(the target hung past {left + 60} s and was killed)")
            print(f"{target}: hung past {left + 60} s, killed: {timeouts[-1]}", flush=True)
            break
        new = sorted(set(os.listdir(out)) - before)
        stats = [line for line in proc.stdout.splitlines()
                 if line.startswith(("Done ", "#")) and ("DONE" in line or "Done" in line)]
        print(f"{target}: exit {proc.returncode}; {stats[-1] if stats else 'no stats'}",
              flush=True)
        saved = [os.path.join(out, n) for n in new if n.startswith(f"{target}-")
                 and not n.endswith("-corpus")]
        if proc.returncode == 0:
            break
        if any("-timeout-" in p for p in saved):
            timeouts += [p for p in saved if "-timeout-" in p]
            print(f"{target}: an input ran past {input_timeout} s: {timeouts[-1]}", flush=True)
            continue                  # go on, from the corpus grown so far
        crashes += saved or [f"(no input saved; exit {proc.returncode})"]
        tail = proc.stdout[-6000:]
        print(f"---- {target}: crash, last output:\n{tail}\n----", flush=True)
        break
    return crashes, timeouts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", metavar="target",
                    help=f"some of {', '.join(TARGETS)} (default: all)")
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    ap.add_argument("--input-timeout", type=int, default=5,
                    help="seconds per input (normal inputs take milliseconds)")
    ap.add_argument("--out", default="build/fuzz", help="corpus and saved inputs")
    ap.add_argument("--fail-on-timeout", action="store_true")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    os.makedirs(args.out, exist_ok=True)
    failed = False
    for target in args.targets or TARGETS:
        crashes, timeouts = fuzz(target, args.seconds, args.out, args.input_timeout)
        if crashes or (timeouts and args.fail_on_timeout):
            failed = True
            print(f"FAIL {target}: {', '.join(crashes + timeouts)}")
        elif timeouts:
            print(f"ok {target} (timeouts, see above: {', '.join(timeouts)})")
        else:
            print(f"ok {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
