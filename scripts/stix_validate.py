"""Validate STIX 2.1 bundles written by feedstix with the OASIS validator, offline.

Each file holds one bundle. Folders are searched for *.json. The summary line is
"<bundles> bundles, <objects> objects, <invalid> invalid".
"""
import json
import pathlib
import sys

from stix2validator import ValidationOptions, validate_instance


def main(paths):
    options = ValidationOptions(version="2.1", strict=False)
    files = []
    for arg in paths:
        path = pathlib.Path(arg)
        if not path.exists():
            print(f"{path}: no such file or folder")
            return 1
        files.extend(sorted(path.rglob("*.json")) if path.is_dir() else [path])
    bundles = objects = invalid = 0
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        bundles += 1
        objects += len(doc.get("objects", []))
        result = validate_instance(doc, options)
        if not result.is_valid:
            invalid += 1
            for error in result.errors:
                print(f"{path}: {error}")
    print(f"{bundles} bundles, {objects} objects, {invalid} invalid")
    return 1 if invalid or not bundles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
