"""Another revision of this repository as a tree a bench can start servers from.

``git archive REV`` extracted into a temporary directory, with the C extensions built there as
``make`` builds them here (without them the revision's server would run its Python paths only,
and be compared unfairly).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def extract_revision(rev: str, build: bool = True) -> str:
    """The tree of ``rev`` in a new temporary directory (left for the caller to remove)."""
    tree = tempfile.mkdtemp(prefix=f"predis-{rev}-")
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "x", "-C", tree], input=archive, check=True)
    if build:
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tree
