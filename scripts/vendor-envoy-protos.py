#!/usr/bin/env python3
"""Copies the .proto files the SDK needs out of the envoy-types crate into sdk/proto/.

The SDK compiles its descriptor pool from these vendored files (sdk/build.rs), so a build needs
nothing outside the repository and the crates it compiles: no `cargo metadata`, which wants every
crate of the lock file (other platforms' included) and fails on a fresh cargo home.

Run this after bumping envoy-types (sdk/build.rs refuses to build while the vendored version
differs from the one in Cargo.lock). It copies the import closure of sdk/proto/entry_files.txt,
keeping envoy-types' layout (one folder per include root), and records the version.
"""
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.path.join(ROOT, "sdk", "proto")
# Include roots, in envoy-types' proto/ folder; imports resolve against them in this order.
INCLUDE_DIRS = ["data-plane-api", "xds", "googleapis", "protoc-gen-validate",
                "opentelemetry-proto", "cel-spec", "client_model"]
# protox ships these itself.
BUILTIN = re.compile(r"^google/protobuf/[a-z_]+\.proto$")
IMPORT = re.compile(r'^import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.M)


def envoy_types_dir():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--manifest-path",
         os.path.join(ROOT, "sdk", "Cargo.toml")],
        check=True, capture_output=True, text=True).stdout
    for p in json.loads(out)["packages"]:
        if p["name"] == "envoy-types":
            return os.path.dirname(p["manifest_path"]), p["version"]
    sys.exit("envoy-types is not a dependency of sdk/")


def main():
    crate, version = envoy_types_dir()
    src = os.path.join(crate, "proto")
    with open(os.path.join(DEST, "entry_files.txt")) as f:
        todo = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    found = {}
    while todo:
        name = todo.pop()
        if name in found or BUILTIN.match(name):
            continue
        for inc in INCLUDE_DIRS:
            path = os.path.join(src, inc, name)
            if os.path.isfile(path):
                found[name] = inc
                with open(path) as f:
                    todo.extend(IMPORT.findall(f.read()))
                break
        else:
            sys.exit(f"{name}: not found under {src}")
    for inc in INCLUDE_DIRS:
        shutil.rmtree(os.path.join(DEST, inc), ignore_errors=True)
    for name, inc in sorted(found.items()):
        target = os.path.join(DEST, inc, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(src, inc, name), target)
    with open(os.path.join(DEST, "ENVOY_TYPES_VERSION"), "w") as f:
        f.write(version + "\n")
    print(f"vendored {len(found)} files from envoy-types {version} into sdk/proto", file=sys.stderr)


if __name__ == "__main__":
    main()
