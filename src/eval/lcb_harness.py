# LiveCodeBench's checks, run inside assay's sandbox. Reads one JSON object from stdin:
# {"code": ..., "func_name": ... or "", "tests": [{"input", "output", "functional"}],
#  "timeout": seconds per test}. Exits 0 when every test passes; otherwise the last line
# on stderr says which test failed and why, and the exit status is 1.
#
# The grading rules follow LiveCodeBench's grader: the same star-imports before the
# code; a standard-input answer is right when its stripped output has as many lines as
# the expected one and each line is equal, or equal as a row of decimals; a functional
# answer is right when Solution().<func_name>(*args) == the expected JSON value (a tuple
# counts as a list); the first failing test ends the check.
import json
import os
import signal
import subprocess
import sys
import tempfile
from decimal import Decimal, InvalidOperation

PRELUDE = """from string import *
from re import *
from datetime import *
from collections import *
from heapq import *
from bisect import *
from copy import *
from math import *
from random import *
from statistics import *
from itertools import *
from functools import *
from operator import *
from io import *
from sys import *
from json import *
from builtins import *
from typing import *
import string
import re
import datetime
import collections
import heapq
import bisect
import copy
import math
import random
import statistics
import itertools
import functools
import operator
import io
import sys
import json
sys.setrecursionlimit(50000)
"""

# Runs the answer as a script; an exit through SystemExit is a normal end, as in the
# grader (which catches it), and any other exception is a runtime error.
LAUNCHER = """import runpy, sys
path = sys.argv[1]
sys.argv = [path]
try:
    runpy.run_path(path, run_name="__main__")
except SystemExit:
    pass
"""


def fail(index, kind, detail):
    detail = detail if len(detail) <= 300 else detail[:150] + " ... " + detail[-150:]
    sys.stderr.write("%s: test %d: %s\n" % (kind, index, detail))
    sys.exit(1)


def stripped_lines(text):
    return [line.strip() for line in text.strip().split("\n")]


def as_decimals(line):
    try:
        return [Decimal(x) for x in line.split()]
    except (InvalidOperation, ValueError):
        return None


def same_output(got, expected):
    got, expected = stripped_lines(got), stripped_lines(expected)
    if len(got) != len(expected):
        return "%d lines, expected %d" % (len(got), len(expected))
    for i, (g, e) in enumerate(zip(got, expected)):
        if g == e:
            continue
        gd, ed = as_decimals(g), as_decimals(e)
        if gd is None or ed is None or gd != ed:
            return "line %d: %r != %r" % (i, g, e)
    return None


def check_stdin(code, tests, timeout):
    folder = tempfile.mkdtemp()
    answer = os.path.join(folder, "answer.py")
    launcher = os.path.join(folder, "launch.py")
    with open(answer, "w") as f:
        f.write(PRELUDE + "\n" + code)
    with open(launcher, "w") as f:
        f.write(LAUNCHER)
    for i, test in enumerate(tests):
        try:
            run = subprocess.run(
                [sys.executable, "-B", launcher, answer],
                input=test["input"].encode(),
                capture_output=True,
                timeout=timeout,
                cwd=folder,
            )
        except subprocess.TimeoutExpired:
            fail(i, "TimeLimitExceeded", "over %g s" % timeout)
        if run.returncode != 0:
            err = run.stderr.decode(errors="replace").strip().splitlines()
            fail(i, "RuntimeError", err[-1] if err else "exit %d" % run.returncode)
        wrong = same_output(run.stdout.decode(errors="replace"), test["output"])
        if wrong:
            fail(i, "WrongAnswer", wrong)


class TimeLimit(Exception):
    pass


def on_alarm(signum, frame):
    raise TimeLimit()


def check_functional(code, func_name, tests, timeout):
    signal.signal(signal.SIGALRM, on_alarm)
    namespace = {"__name__": "answer"}
    source = PRELUDE + "\n\n" + code
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        exec(compile(source, "answer.py", "exec"), namespace)
        target = namespace["Solution"]() if "class Solution" in code else None
    except TimeLimit:
        fail(0, "TimeLimitExceeded", "defining the answer took over %g s" % timeout)
    except BaseException as e:
        fail(0, "RuntimeError", "the answer does not load: %r" % e)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    method = getattr(target, func_name, None) if target is not None else namespace.get(func_name)
    if method is None:
        fail(0, "RuntimeError", "no function %s" % func_name)
    for i, test in enumerate(tests):
        args = [json.loads(line) for line in test["input"].split("\n")]
        expected = json.loads(test["output"])
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            got = method(*args)
        except TimeLimit:
            fail(i, "TimeLimitExceeded", "over %g s" % timeout)
        except BaseException as e:
            fail(i, "RuntimeError", repr(e))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(got, tuple):
            got = list(got)
        if got != expected:
            fail(i, "WrongAnswer", "%r != %r" % (got, expected))


def main():
    job = json.loads(sys.stdin.buffer.read())
    if job["func_name"]:
        check_functional(job["code"], job["func_name"], job["tests"], job["timeout"])
    else:
        check_stdin(job["code"], job["tests"], job["timeout"])


main()
