"""Which code a run ran: MLflow's standard source and git tags, so the UI's Source and Version
columns fill in.

MLflow's own context providers read the git repo of `sys.argv[0]`; for r1exp that is a console
script in a venv's bin/ or the caller's cwd, not r1exp's code. The repo that matters is the one
this package was imported from, and only when the package dir is that repo's own (an editable
install or a checkout). An installed wheel has no repo, and a venv inside some other project's
checkout must not borrow that project's commit: then there are no git tags, only the version.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from r1exp.resources import PACKAGE_DIR

SOURCE_NAME = "r1exp"  # the UI shows the last path component of mlflow.source.name
VERSION_TAG = "r1exp.version"


def source_tags() -> dict[str, str]:
    """mlflow.source.* and mlflow.user tags plus the installed r1exp version; git tags only
    where known."""
    from mlflow.utils.mlflow_tags import (
        MLFLOW_GIT_BRANCH,
        MLFLOW_GIT_COMMIT,
        MLFLOW_GIT_DIRTY,
        MLFLOW_GIT_REPO_URL,
        MLFLOW_SOURCE_NAME,
        MLFLOW_SOURCE_TYPE,
        MLFLOW_USER,
    )

    tags = {MLFLOW_SOURCE_NAME: SOURCE_NAME, MLFLOW_SOURCE_TYPE: "LOCAL"}
    user = _user()
    if user:
        tags[MLFLOW_USER] = user  # the UI's "Created by"
    version = package_version()
    if version:
        tags[VERSION_TAG] = version
    git = git_info()
    for tag, key in ((MLFLOW_GIT_COMMIT, "commit"), (MLFLOW_GIT_BRANCH, "branch"),
                     (MLFLOW_GIT_DIRTY, "dirty"), (MLFLOW_GIT_REPO_URL, "repo_url")):
        if git.get(key):
            tags[tag] = git[key]
    return tags


def git_commit() -> str | None:
    """The commit of r1exp's own checkout; None for an installed wheel."""
    return git_info().get("commit")


@functools.lru_cache(maxsize=1)
def git_info() -> dict[str, str]:
    checkout = PACKAGE_DIR.parent
    top = _git(checkout, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != checkout.resolve():
        return {}
    info = {"commit": _git(checkout, "rev-parse", "HEAD"),
            "dirty": "true" if _git(checkout, "status", "--porcelain",
                                    "--untracked-files=no") else "false"}
    branch = _git(checkout, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":  # "HEAD": a detached checkout has no branch
        info["branch"] = branch
    remote = _git(checkout, "remote")
    if remote:
        preferred = "origin" if "origin" in remote.split() else remote.split()[0]
        url = _git(checkout, "remote", "get-url", preferred)
        if url:
            info["repo_url"] = without_credentials(url)
    return {k: v for k, v in info.items() if v}


def without_credentials(url: str) -> str:
    """https://user:token@host/x -> https://host/x: a tag is shown to everyone."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url  # git@host:org/repo (ssh) names a user, not a secret
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("r1exp")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return None


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return None


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git installed, or a hung filesystem
        return None
    return out.stdout.strip() if out.returncode == 0 else None
