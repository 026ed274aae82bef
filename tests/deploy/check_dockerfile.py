#!/usr/bin/env python3
"""Cheap checks of deploy/Dockerfile, which cannot be built here (no image registry):
- every package each stage installs exists in the Debian archive index (apt-cache show);
- every COPY source exists: in the build context (the repository) or, for COPY --from=build, among
  the programs the build stage's ninja command builds;
- every shared library the built programs link (ldd on BIN_DIR's copies, mapped to packages with
  dpkg -S) is installed by the stage that ships them, or is part of debian:12-slim.
Usage: check_dockerfile.py DOCKERFILE REPO_ROOT [BIN_DIR]"""
import os
import re
import subprocess
import sys

# In every debian:12-slim image (Essential or required by apt).
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def stages(text):
    """[(name, [instruction lines])], continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            result.append((m.group(1) or str(len(result)), []))
        elif result:
            result[-1][1].append(line)
    return result


def in_archive(packages):
    """The subset of `packages` the Debian archive index knows (one apt-cache call)."""
    if not packages:
        return set()
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(packages)],
                       capture_output=True, text=True, check=False)
    return set(re.findall(r"^Package: (\S+)$", r.stdout, re.M)) & set(packages)


def owners_of(libs):
    """{path: Debian package} for the libraries dpkg knows, as linked or as the file they link
    to (one dpkg -S call)."""
    paths = sorted({p for lib in libs for p in (lib, os.path.realpath(lib))})
    if not paths:
        return {}
    r = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True, check=False)
    owner = {}
    for line in r.stdout.splitlines():
        package, _, path = line.partition(": ")
        owner[path.strip()] = package.split(":")[0]
    return {lib: owner.get(lib) or owner.get(os.path.realpath(lib)) for lib in libs}


def installed_packages(lines):
    packages = []
    for line in lines:
        m = re.search(r"apt-get install\s+(.*?)(?:&&|$)", line)
        if m:
            packages += [w for w in m.group(1).split() if not w.startswith("-")]
    return packages


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    dockerfile, root = sys.argv[1], sys.argv[2]
    bin_dir = sys.argv[3] if len(sys.argv) > 3 else None
    with open(dockerfile, encoding="utf-8") as f:
        parsed = stages(f.read())
    problems = []
    by_name = dict(parsed)
    if "build" not in by_name:
        problems.append("no stage named build")
    built = set()
    for line in by_name.get("build", []):
        m = re.search(r"ninja\s+-C\s+\S+\s+([^&]+)", line)
        if m:
            built |= set(m.group(1).split())
    shipped = {}  # stage -> programs it copies from the build stage
    for name, lines in parsed:
        packages = installed_packages(lines)
        known = in_archive(set(packages))
        for package in packages:
            if package not in known:
                problems.append(f"stage {name}: package {package} is not in the Debian archive "
                                "index (apt-get update first)")
        for line in lines:
            m = re.match(r"COPY\s+(--from=(\S+)\s+)?(\S+)\s+(\S+)", line, re.I)
            if not m:
                continue
            source = m.group(3)
            if m.group(2):
                program = os.path.basename(source)
                # A module (libNAME.so) is built by the ninja target NAME.
                target = re.sub(r"^lib(.*)\.so$", r"\1", program)
                if m.group(2) != "build" or target not in built:
                    problems.append(f"stage {name}: COPY {source}: not a program the build stage "
                                    f"builds ({' '.join(sorted(built))})")
                # Where it is in a build tree: the path below the build stage's build directory.
                below = re.sub(r"^/src/[^/]+/", "", source)
                shipped.setdefault(name, []).append(below)
            elif not os.path.exists(os.path.join(root, source)):
                problems.append(f"stage {name}: COPY source {source} does not exist")
        shipped.setdefault(name, [])
        by_name[name] = (lines, set(packages) | BASE_PACKAGES)
    if bin_dir:
        for name, programs in shipped.items():
            for program in programs:
                path = os.path.join(os.path.dirname(os.path.normpath(bin_dir)), program)
                if not os.path.exists(path):
                    continue  # not built in this tree
                ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
                if ldd.returncode != 0:
                    # A static program (nodemesh-cni) needs no library; anything else is an error.
                    if "not a dynamic executable" in ldd.stdout + ldd.stderr:
                        continue
                    problems.append(f"{program}: ldd failed: {ldd.stderr.strip()}")
                    continue
                libs = re.findall(r"=>\s+(/\S+)", ldd.stdout)
                owners = owners_of(libs)
                for lib in libs:
                    owner = owners[lib]
                    if owner is None:
                        problems.append(f"{program}: {lib} belongs to no Debian package")
                    elif owner not in by_name[name][1]:
                        problems.append(f"stage {name}: {program} links {lib} from {owner}, which "
                                        "the stage does not install")
    for p in problems:
        print(p)
    print(f"{dockerfile}: {len(parsed)} stages, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
