"""The course's foundation: packaging, the runtime switches, recorded metrics, and the
committed notebooks' hygiene."""

import json
import math
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from qcoder_lib import runtime
from qcoder_lib.extras import EXTRAS, extra_for, require
from qcoder_lib.course import metrics

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _name(req: str) -> str:
    return re.split(r"[<>=!~; \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_installs_the_package_with_every_extra():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml must have exactly one pip: section"
    assert [r.strip() for r in pip_lists[0]] == ["-e .[all,dev]"], "pyproject is the one list"
    py = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert py, "environment.yml must pin a python version"
    assert pyproject["requires-python"] == ">=3.10"
    assert "-e \".[all,dev]\"" in (ROOT / "Makefile").read_text()  # make setup: the same


def test_extras_in_pyproject_and_qcoder_lib_extras_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    assert groups.pop("all") == [f"qcoder-course[{','.join(k for k in EXTRAS if k != 'core')}]"]
    groups.pop("dev")
    declared = {extra: sorted(_name(r) for r in reqs) for extra, reqs in groups.items()}
    listed = {extra: sorted(dist for _, dist in pairs) for extra, pairs in EXTRAS.items()}
    # ipykernel is installed for the notebooks but never imported by the library
    declared["course"].remove("ipykernel")
    assert declared == listed
    assert {dist for _, dist in runtime.REQUIRED_PACKAGES} == {d for v in listed.values() for d in v}


def test_require_names_the_extra_to_install():
    assert require("numpy").__name__ == "numpy"
    assert extra_for("datatrove.executor") == "data" and extra_for("nope") is None
    with pytest.raises(ImportError, match=r"qcoder-course\[sft\]"):
        import sys

        saved = sys.modules.get("peft")
        sys.modules["peft"] = None  # as if not installed
        try:
            require("peft", "LoRA")
        finally:
            if saved is None:
                del sys.modules["peft"]
            else:
                sys.modules["peft"] = saved


def test_ci_runs_make_test_and_make_test_runs_nbval():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    test_rule = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "--nbval" in test_rule and "tests" in test_rule and "QCODER_PROFILE=smoke" in test_rule


def test_get_profile_reads_the_variable_and_rejects_unknown(monkeypatch):
    monkeypatch.setenv("QCODER_PROFILE", "cpu")
    assert runtime.get_profile() == "cpu"
    monkeypatch.setenv("QCODER_PROFILE", "huge")
    with pytest.raises(ValueError, match="QCODER_PROFILE"):
        runtime.get_profile()
    monkeypatch.delenv("QCODER_PROFILE")
    monkeypatch.setenv("CI", "true")
    assert runtime.get_profile() == "smoke"
    monkeypatch.delenv("CI")
    assert runtime.get_profile() in ("cpu", "gpu")


def test_by_profile_picks_the_value_for_the_profile(monkeypatch):
    monkeypatch.setenv("QCODER_PROFILE", "smoke")
    assert runtime.by_profile(1, 2, 3) == 1
    assert runtime.by_profile(1, 2, 3, profile="gpu") == 3
    with pytest.raises(ValueError):
        runtime.by_profile(1, 2, 3, profile="tpu")


def test_get_device_prefers_what_is_asked_and_refuses_what_is_absent(monkeypatch):
    import torch

    assert runtime.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("QCODER_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")
    with pytest.raises(ValueError):
        runtime.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="not available"):
            runtime.get_device("cuda")


def test_seed_everything_repeats_random_streams():
    import random

    import numpy as np
    import torch

    def draw():
        return random.random(), float(np.random.rand()), torch.randn(3).tolist()

    runtime.seed_everything(123)
    a = draw()
    runtime.seed_everything(123)
    b = draw()
    runtime.seed_everything(124)
    c = draw()
    assert a == b and a != c


def test_ensure_triton_backend_uses_the_interpreter_without_gpu(monkeypatch):
    import torch

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    mode = runtime.ensure_triton_backend()
    if torch.cuda.is_available():
        assert mode == "gpu"
    else:
        assert mode == "interpreter"
        import os

        assert os.environ["TRITON_INTERPRET"] == "1"


def test_check_environment_reports_a_missing_package_instead_of_raising():
    rows = runtime.check_environment([("numpy", "numpy"), ("no_such_module_xyz", "no-such-dist")])
    assert rows[0]["ok"] and rows[0]["version"]
    assert not rows[1]["ok"] and "ModuleNotFoundError" in rows[1]["error"]


def test_describe_machine_names_device_profile_and_memory():
    info = runtime.describe_machine()
    assert info["profile"] in runtime.PROFILES
    assert info["cpu_cores"] >= 1 and info["device"]
    assert info["free_memory_gib"] is None or info["free_memory_gib"] > 0


def test_record_metric_appends_to_the_runner_file(tmp_path, monkeypatch):
    f = tmp_path / "m.jsonl"
    monkeypatch.setenv("QCODER_METRICS_FILE", str(f))
    assert metrics.record_metric("99/loss", 1.5, unit="nats") == 1.5
    metrics.record_metric("99/loss", 1.25)
    metrics.record_metric("99/name", "tiny")
    got = metrics.read_metrics_file(f)
    assert got == {"99/loss": (1.25, ""), "99/name": ("tiny", "")}
    assert metrics.recorded_metrics()["99/loss"] == 1.25


def test_record_metric_refuses_nan_and_bad_names():
    with pytest.raises(ValueError, match="NaN"):
        metrics.record_metric("99/x", math.nan)
    with pytest.raises(ValueError, match="NN/what"):
        metrics.record_metric("x", 1.0)
    with pytest.raises(TypeError):
        metrics.record_metric("99/x", [1, 2])


def test_read_metrics_file_names_file_and_line_of_a_malformed_line(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"name": "a/b", "value": 1}\n{not json\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2"):
        metrics.read_metrics_file(f)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_clean_smoke_outputs(nb_path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{nb_path.name} has no code"
    assert all(c.get("execution_count") for c in code), (
        f"{nb_path.name}: some code cells were never executed; run `make notebooks NB={nb_path.name[:2]}`"
    )
    assert any(c.get("outputs") for c in code), f"{nb_path.name} is committed without outputs"
    path_re = re.compile(r"(/work/|/root/|/tmp/|/home/[^/\s]+/|/Users/[^/\s]+/)")
    for i, c in enumerate(code):
        for o in c.get("outputs", []):
            assert o.get("output_type") != "error", f"{nb_path.name}: code cell {i} has an error"
            text = "".join(o.get("text", "")) + json.dumps(o.get("data", {}))
            m = path_re.search(text)
            assert not m, f"{nb_path.name}: code cell {i} output leaks a machine path {m.group(0)!r}"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


def test_there_is_a_notebook_for_the_foundation():
    assert any(p.name == "00_setup_and_tour.ipynb" for p in NOTEBOOKS)
