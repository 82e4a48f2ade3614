#!/usr/bin/env python3
"""Compare rollwave's build with `kubectl kustomize` on every kustomization root.

usage: compare.py [--rollwave BIN] [--jobs N] [--show N] [--list] DIR...

Each DIR is a checked-out repository (it is also the `--root` no path may leave).
Every directory under it holding a kustomization.yaml, kustomization.yml or
Kustomization is built by both; the outputs are parsed as YAML streams and
compared as data, document by document, then byte for byte. Roots kustomize
itself refuses, and roots that need the network (remote bases, charts pulled
from a repository), are counted apart: they say nothing about compatibility.
Nothing here is kept: the repositories are read in place, outputs stay in memory.
"""

import argparse
import collections
import concurrent.futures
import os
import re
import subprocess
import sys

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# kustomize's messages when a build reaches for the network.
NETWORK = re.compile(
    r"(git cloning|git fetch|no 'git' program|failed to run '/usr/bin/git|"
    r"trouble configuring builtin HelmChartInflationGenerator|"
    r"unable to find plugin root|https?://|github\.com/[^ ]+\?ref=|"
    r"only kustomization files can be|dial tcp)",
    re.IGNORECASE,
)
TIMEOUT = 120


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader without its YAML 1.1 `=` value tag: a plain `=` is text."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def roots_under(repo):
    """Every kustomization root under repo, sorted, skipping VCS and vendor trees."""
    found = []
    for here, dirs, files in os.walk(repo):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "node_modules"))
        if any(name in files for name in KUSTOMIZATION_FILES):
            found.append(here)
    return found


def run(argv):
    """Runs argv; returns (ok, stdout, stderr) with a timeout counted as a failure."""
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, b"", b"timed out"
    return proc.returncode == 0, proc.stdout, proc.stderr


def parse(text):
    """The stream's documents, empty ones dropped, or None when it does not parse."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=Loader) if doc is not None]
    except yaml.YAMLError:
        return None


def first_difference(want, got):
    """A short description of where two document lists first differ."""
    if len(want) != len(got):
        return f"{len(want)} documents from kustomize, {len(got)} from rollwave"
    for index, (left, right) in enumerate(zip(want, got)):
        if left != right:
            return f"document {index}: {describe(left, right, '')}"
    return "same data"


def describe(left, right, path):
    """The first field path where two values differ, with both values."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right), key=str):
            if left.get(key, KeyError) != right.get(key, KeyError):
                return describe(left.get(key, "<absent>"), right.get(key, "<absent>"), f"{path}.{key}")
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        for index, (a, b) in enumerate(zip(left, right)):
            if a != b:
                return describe(a, b, f"{path}[{index}]")
    return f"{path or '.'}: kustomize {short(left)}, rollwave {short(right)}"


def short(value):
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."


def compare(repo, root, rollwave):
    """Builds root both ways and classifies the outcome."""
    k_ok, k_out, k_err = run(["kubectl", "kustomize", root])
    r_ok, r_out, r_err = run([rollwave, "build", "--root", repo, root])
    if not k_ok:
        message = k_err.decode(errors="replace")
        if NETWORK.search(message):
            return "skipped: needs the network", message
        if not r_ok:
            return "skipped: both refuse", message
        return "skipped: kustomize refuses, rollwave builds", message
    if not r_ok:
        message = r_err.decode(errors="replace")
        if "remote" in message or "helm pull" in message:
            return "skipped: needs the network", message
        return "different: rollwave refuses", message
    if k_out == r_out:
        return "identical", ""
    want, got = parse(k_out), parse(r_out)
    if want is None or got is None:
        return "different: output does not parse", ""
    if want == got:
        return "same data, different bytes", byte_difference(k_out, r_out)
    return "different: data", first_difference(want, got)


def byte_difference(want, got):
    """The first line where two outputs differ."""
    for index, (a, b) in enumerate(zip(want.splitlines(), got.splitlines())):
        if a != b:
            return f"line {index + 1}: kustomize {a!r}, rollwave {b!r}"
    return "trailing lines differ"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollwave", default="rollwave")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--show", type=int, default=3, help="details shown per class")
    parser.add_argument("--list", action="store_true", help="every root with its class")
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    work = [(os.path.abspath(repo), root) for repo in args.dirs for root in roots_under(os.path.abspath(repo))]
    results = collections.defaultdict(list)
    per_repo = collections.defaultdict(collections.Counter)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        outcomes = pool.map(lambda item: (item, compare(item[0], item[1], args.rollwave)), work)
        for (repo, root), (kind, detail) in outcomes:
            results[kind].append((root, detail))
            per_repo[os.path.basename(repo)][kind] += 1
            if args.list:
                print(f"{kind}\t{root}", flush=True)
    print(f"{len(work)} roots in {len(args.dirs)} repositories")
    for repo, counts in sorted(per_repo.items()):
        print(f"  {repo}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    for kind, items in sorted(results.items()):
        print(f"{kind}: {len(items)}")
        if kind != "identical":
            for root, detail in items[: args.show]:
                print(f"  {root}\n    {detail.strip()[:600]}")
    return 0 if all(k == "identical" or k.startswith("skipped") or k.startswith("same") for k in results) else 1


if __name__ == "__main__":
    sys.exit(main())
