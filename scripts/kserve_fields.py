"""Extract KServe's v1beta1 API fields from its Python SDK wheel, for the offline manifest check.

    pip download kserve==0.21.0 --no-deps -d /tmp/kserve
    python scripts/kserve_fields.py /tmp/kserve/kserve-0.21.0-py3-none-any.whl \
        > tests/deploy/kserve_v1beta1_fields.json

No PyPI package ships KServe's CRD YAML; the SDK's models are generated from the same OpenAPI
schema: each class maps its JSON field names (``attribute_map``) to a type (``openapi_types``).
The wheel is read as a zip and its sources parsed with ``ast``, never imported (the SDK needs
a model server's worth of dependencies that conflict with ours).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from typing import Any


def literal(tree: ast.ClassDef, name: str) -> dict[str, str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            value: dict[str, str] = ast.literal_eval(node.value)
            return value
    return {}


def main(wheel: str) -> None:
    classes: dict[str, dict[str, str]] = {}
    found = re.search(r"kserve-([^-/]+)-py3", wheel)
    version = found.group(1) if found else "?"
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not re.fullmatch(r"kserve/models/v1beta1_\w+\.py", name):
                continue
            for node in ast.parse(archive.read(name)).body:
                if isinstance(node, ast.ClassDef):
                    types, fields = literal(node, "openapi_types"), literal(node, "attribute_map")
                    classes[node.name] = {fields[key]: types[key] for key in fields}
    document: dict[str, Any] = {
        "source": f"kserve=={version} (PyPI), kserve/models/v1beta1_*.py",
        "classes": classes,
    }
    json.dump(document, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
