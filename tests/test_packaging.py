"""The project installs as documented: environment.yml mirrors pyproject.toml, CI calls make test."""

import re
import tomllib

import yaml
from conftest import REPO
from packaging.requirements import Requirement


def _norm(req: str) -> tuple[str, str]:
    r = Requirement(req)
    return r.name.lower().replace("_", "-"), str(r.specifier)


def test_environment_pip_section_matches_package_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["workflow"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"


def test_torch_pins_admit_the_supported_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    assert reqs["torch"].specifier.contains("2.14.1")
    assert reqs["torchvision"].specifier.contains("0.29.1")


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "make test" in (REPO / "README.md").read_text()


def test_doctor_checks_the_floors_pyproject_declares(monkeypatch):
    """doctor reads the floors from the installed package's metadata (pyproject.toml's, not a copy) and
    names a version below one."""
    from deepfake_xai import doctor

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {(r.name, str(r.specifier), optional) for r, optional in doctor.declared_requirements()}
    wanted = {(*_norm(r), False) for r in project["dependencies"]}
    wanted |= {(*_norm(r), True) for r in project["optional-dependencies"]["workflow"]}
    assert {(n.lower(), s, o) for n, s, o in declared} == wanted
    real = doctor.md.version
    monkeypatch.setattr(doctor.md, "version", lambda name: "1.26.4" if name == "numpy" else real(name))
    numpy = next(c for c in doctor.check_packages() if c.what == "numpy")
    assert numpy.status == "FAIL" and "needs >=2.0" in numpy.detail


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version
    return pins


def test_the_lock_pins_every_declared_requirement_inside_its_range():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _lock()
    for text in project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]:
        req = Requirement(text)
        name = _canonical(req.name)
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned in constraints.txt: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {req.specifier}: run make lock")


def test_the_lock_is_complete_and_is_what_is_installed():
    """Every package in this environment is pinned, at the installed version (make install and CI install
    with -c constraints.txt); and pip finds no broken requirement."""
    import subprocess
    import sys
    from importlib import metadata

    pins = _lock()
    own = {"deepfake-xai", "pip", "wheel"}  # the project itself and the installer
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    unpinned = sorted(set(installed) - set(pins) - own)
    assert not unpinned, f"installed but not in constraints.txt: {unpinned}"
    differ = {n: (v, pins[n]) for n, v in installed.items() if n in pins and v != pins[n]}
    assert not differ, f"installed vs constraints.txt: {differ}; run make install (or make lock)"
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
