"""The cluster configs in study/cluster/ parse, and say what the study needs: GPU workers, shared results, auth.

    python -m pytest -q tests/test_cluster_configs.py

No cloud is touched: the `ray up` config is checked against Ray's own schema for it, the RayJob's
commands against the study's own argument parser, and the pinned versions against requirements.txt.
"""

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from study.cli import get_args_parser
from study.tune.cluster import WORKING_DIR_EXCLUDES

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "study" / "cluster"


def requirements() -> dict[str, str]:
    """Package name -> pinned version, from requirements.txt."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"\[.*\]", "", name)] = version
    return pins


def study_commands(text: str) -> list[list[str]]:
    """The `python -m study ...` commands of a shell line, as argv lists after `python -m study`."""
    commands = [shlex.split(part) for part in re.split(r"&&|;", text)]
    return [argv[3:] for argv in commands if argv[:3] == ["python", "-m", "study"]]


@pytest.fixture(scope="module")
def aws() -> dict:
    return yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())


@pytest.fixture(scope="module")
def rayjob() -> tuple[dict, dict]:
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text())}
    assert set(docs) == {"RayJob", "PersistentVolumeClaim"}
    return docs["RayJob"], docs["PersistentVolumeClaim"]


def test_ray_up_config_follows_rays_schema_with_a_cpu_head_and_gpu_workers(aws):
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(aws, schema)  # what `ray up` itself checks first
    assert aws["provider"]["type"] == "aws"
    types = aws["available_node_types"]
    head = types[aws["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "no trial may land on the CPU-only head"
    assert not re.match(r"(g\d|p\d)", head["node_config"]["InstanceType"])
    workers = [t for name, t in types.items() if name != aws["head_node_type"]]
    assert workers and all(re.match(r"(g5|g6|p4|p5)", t["node_config"]["InstanceType"]) for t in workers)
    assert all(t["min_workers"] >= 1 for t in workers), "GPUs must be there when the driver sizes its trials"


def test_ray_up_config_ships_the_repo_installs_the_pins_and_mounts_shared_results(aws):
    assert aws["file_mounts"]["~/ecg-study"] == "."
    assert {"input/", "results/", ".git/"} <= set(aws["rsync_exclude"])
    setup = "\n".join(aws["setup_commands"])
    assert "pip install --quiet -r ~/ecg-study/requirements.txt" in setup
    assert f"ray[default,tune]=={requirements()['ray']}" in setup
    assert f"torch=={requirements()['torch']}" in setup  # the CUDA build, of the pinned version
    assert re.search(r"mount -t nfs4 .* /mnt/shared", setup), "every node mounts the shared folder at one path"


def test_ray_up_config_keeps_token_auth_on_and_the_dashboard_on_loopback(aws):
    assert aws["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    head = " ".join(aws["head_start_ray_commands"])
    worker = " ".join(aws["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head and "RAY_AUTH_MODE=token ray start --address" in worker
    assert "--dashboard-host=127.0.0.1" in head
    everything = yaml.safe_dump(aws)
    assert "RAY_AUTH_MODE=disabled" not in everything and "0.0.0.0" not in everything


def test_runtime_env_for_ray_job_submit_excludes_what_launch_excludes():
    env = yaml.safe_load((CLUSTER / "runtime-env.yaml").read_text())
    assert env["working_dir"] == "."
    assert env["excludes"] == WORKING_DIR_EXCLUDES


def test_rayjob_runs_the_paper_study_on_gpu_workers_with_results_on_a_shared_volume(rayjob):
    job, pvc = rayjob
    spec = job["spec"]
    assert job["apiVersion"] == "ray.io/v1"
    launches = [argv for argv in study_commands(spec["entrypoint"]) if argv[0] == "launch"]
    assert len(launches) == 1
    args = get_args_parser().parse_args(launches[0])  # the study's own parser accepts the command
    assert (args.profile, args.address, args.results, args.demo) == ("paper", "auto", "/mnt/results", False)
    assert args.gpus_per_trial > 0

    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == requirements()["ray"]
    assert cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    head_limits = head["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in head_limits
    groups = cluster["workerGroupSpecs"]
    assert any(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1
               for g in groups for c in g["template"]["spec"]["containers"])

    claim = pvc["metadata"]["name"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for pod in [head["template"]["spec"]] + [g["template"]["spec"] for g in groups]:
        volumes = {v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim}
        mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert mounts.get("/mnt/results") in volumes, "every pod sees the results at /mnt/results"
    for container in [c for pod in [head] + groups for c in pod["template"]["spec"]["containers"]]:
        assert container["image"].startswith(f"rayproject/ray:{requirements()['ray']}-")


def test_rayjob_runtime_env_ships_the_code_and_the_pinned_requirements(rayjob):
    env = yaml.safe_load(rayjob[0]["spec"]["runtimeEnvYAML"])
    assert env["working_dir"].endswith(".zip")
    # Ray comes with the image; the test tools (pytest, its workers, moto's S3 stand-in) are not needed to run a study.
    tools = ("ray", "pytest", "pytest-xdist", "moto")
    pins = {name: version for name, version in requirements().items() if name not in tools}
    packages = env["pip"]["packages"]
    assert {p.split("==")[0]: p.split("==")[1] for p in packages if "==" in p} == pins
    assert not any(p.startswith("ray") for p in packages), "Ray comes with the image; a second copy breaks it"


@pytest.mark.parametrize("job_env, ships_code", [
    (None, True),  # `python -m study launch --address ...` on a node: the driver ships the code itself
    ({"working_dir": "gcs://_ray_pkg_0123.zip"}, False),  # `ray job submit --working-dir .`, a RayJob
])
def test_a_driver_run_as_a_ray_job_leaves_the_code_to_the_job(monkeypatch, job_env, ships_code):
    import argparse

    import ray

    from study.tune import cluster

    if job_env is None:
        monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    else:  # what Ray's job supervisor sets for the entrypoint
        monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": job_env, "metadata": {}}))
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    cluster.start_ray(argparse.Namespace(address="auto", verbose=False, num_cpus=None))
    assert ("working_dir" in calls[0]["runtime_env"]) == ships_code
