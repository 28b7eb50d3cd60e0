#!/usr/bin/env python3
"""Rewrite a `docker save` archive so `kind build node-image --type file` sees every image in it.

kind reads only the first of manifest.json / repositories it meets in an image tar, and of manifest.json
only the first entry; it also matches images by fully-qualified name. So: qualify every tag
(docker.io/...), and put `repositories`, which lists every image, first in the archive.
"""

import io
import json
import sys
import tarfile


def qualify(repo: str) -> str:
    first = repo.split("/")[0]
    if "/" not in repo:
        return "docker.io/library/" + repo
    if "." in first or ":" in first or first == "localhost":
        return repo
    return "docker.io/" + repo


def qualify_tag(tag: str) -> str:
    repo, _, version = tag.rpartition(":")
    return qualify(repo) + ":" + version


def main(src: str, dst: str) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        members = sorted(tin.getmembers(), key=lambda m: 0 if m.name == "repositories" else 1)
        for member in members:
            data = tin.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == "manifest.json" and data is not None:
                entries = json.loads(data)
                for entry in entries:
                    entry["RepoTags"] = [qualify_tag(t) for t in entry.get("RepoTags") or []]
                data = json.dumps(entries).encode()
            elif member.name == "repositories" and data is not None:
                data = json.dumps({qualify(k): v for k, v in json.loads(data).items()}).encode()
            if data is None:
                tout.addfile(member)
            else:
                member.size = len(data)
                tout.addfile(member, io.BytesIO(data))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
