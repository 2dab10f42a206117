"""environment.yml (conda) and pyproject.toml (pip) must list the same packages and versions."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's
NOT_PACKAGES = {"python", "pip"}


def _split(req: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*?)\s*$", req).groups()
    return name.lower(), spec.replace(" ", "")


def _conda_spec(spec: str) -> str:
    # conda's fuzzy "=2.4" is pip's "==2.4.*"; everything else is written the same in both
    return f"=={spec[1:]}.*" if re.fullmatch(r"=[\d.]+", spec) else spec


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(_split(r) for r in project["dependencies"])


def conda_requirements() -> dict[str, str]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    found = {}
    for dep in deps:
        if isinstance(dep, dict):  # the pip: section
            for req in dep["pip"]:
                if not req.startswith("-"):
                    name, spec = _split(req.split("#")[0])
                    found[name] = spec
            continue
        name, spec = _split(dep)
        if name not in NOT_PACKAGES:
            found[CONDA_TO_PIP.get(name, name)] = _conda_spec(spec)
    return found


def test_same_packages_and_versions():
    pip, conda = pip_requirements(), conda_requirements()
    assert sorted(pip) == sorted(conda), (
        f"only in pyproject.toml: {sorted(set(pip) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(pip))}")
    assert pip == conda


SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")  # torch 2.13 has wheels for each


def test_python_versions_agree_and_admit_3_11_to_3_13():
    from packaging.specifiers import SpecifierSet
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert conda_python == ["python>=3.11,<3.14"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_python = SpecifierSet(project["requires-python"])
    conda_spec = SpecifierSet(conda_python[0].removeprefix("python"))
    for version in ("3.10.14", *(f"{v}.0" for v in SUPPORTED_PYTHONS), "3.14.0"):
        admitted = version[:4] in SUPPORTED_PYTHONS
        assert pip_python.contains(version) == admitted == conda_spec.contains(version), version
    classifiers = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if "Python :: 3." in c}
    assert classifiers == set(SUPPORTED_PYTHONS)


def test_outputs_that_change_notebooks_are_pinned():
    pip = pip_requirements()
    for name in ("torch", "numpy", "matplotlib"):
        assert pip[name].startswith("=="), f"{name} must be pinned: {pip[name]!r}"
