"""The workflow on a real single-node SLURM cluster started by the test: munged, slurmctld and slurmd
on 127.0.0.1 from a slurm.conf written here, jobs submitted by Snakemake's SLURM executor with the
project's profile (workflow/profiles/slurm). The node has two stand-in GPUs: GRES entries backed by
/dev/null and /dev/zero, which the scheduler counts, allocates and exports (CUDA_VISIBLE_DEVICES) like
real ones while nothing runs on them, so the profile's --gpus=1 requests are granted and checked.

Installs Debian's slurm-wlm and munge with apt-get when they are missing; skipped only where apt-get
is not available. Every daemon the test started is stopped by its PID."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_repo

pytestmark = pytest.mark.workflow

CELL = "results/tiny/metrics/mnasnet_100/presocial/presocial.json"
GPU_RULES = ("train", "explain", "actmax", "xai_metrics", "transfer_predict")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_slurm() -> None:
    if shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("munged"):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("slurm-wlm/munge are not installed and apt-get (as root) is not available to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:  # a stale package index: refresh once
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"], env=env,
                              capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _munge_works() -> bool:
    if not shutil.which("munge"):
        return False
    p = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, timeout=10)
    return p.returncode == 0


def _slurm_conf(d: Path) -> str:
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    return f"""ClusterName=dfxtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
MinJobAge=3600
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node cluster: yields the environment (SLURM_CONF) for client commands."""
    _ensure_slurm()
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    # Job steps (srun inside a job) read the default path, not SLURM_CONF: the config goes there
    # unless a cluster configuration already exists on this machine.
    conf, gres = Path("/etc/slurm/slurm.conf"), Path("/etc/slurm/gres.conf")
    for path in (conf, gres):
        if path.exists():
            pytest.skip(f"{path} exists: this machine already has a SLURM configuration; not touching it")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(_slurm_conf(d))
    # two stand-in GPUs: slurmd needs a character device per GPU and only counts and exports them
    gres.write_text("NodeName=localhost Name=gpu File=/dev/null\nNodeName=localhost Name=gpu File=/dev/zero\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen] = []
    try:
        if not _munge_works():
            key = Path("/etc/munge/munge.key")
            if not key.exists():
                subprocess.run(["mungekey", "--create"], check=True, timeout=30)
                shutil.chown(key, "munge", "munge")
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            started.append(subprocess.Popen(["munged", "--foreground"], user="munge",
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for _ in range(50):
                if _munge_works():
                    break
                time.sleep(0.1)
        started.append(subprocess.Popen(["slurmctld", "-D", "-f", str(conf)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started.append(subprocess.Popen(["slurmd", "-D", "-N", "localhost", "-f", str(conf)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        state = ""
        for _ in range(120):
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        assert state == "idle", f"node state {state!r}; logs in {d}"
        yield env
    finally:
        conf.unlink(missing_ok=True)
        gres.unlink(missing_ok=True)
        for proc in reversed(started):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_profile_requests_gpus_for_gpu_rules_only():
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    assert "attempt" in str(profile["default-resources"]["mem_mb"])  # more memory on the retry
    for rule in GPU_RULES:
        assert profile["set-resources"][rule]["slurm_partition"] != profile["default-resources"]["slurm_partition"]
        assert profile["set-resources"][rule]["cpus_per_gpu"] >= 1
    # the rules themselves declare the GPU: the executor turns it into --gpus=1
    import re

    rules = "\n".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    blocks = {m.group(1): m.group(2) for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", rules, re.M | re.S)}
    assert {name for name, body in blocks.items() if re.search(r"^\s+gpu=", body, re.M)} == {*GPU_RULES, "cache"}
    # the cache asks for a GPU only to decode JPEGs on it, and then goes to the GPU partition
    assert re.search(r"^\s+gpu=1 if .*cache_jpeg_device.* else 0", blocks["cache"], re.M)
    assert profile["set-resources"]["cache"]["slurm_partition"] == profile["set-resources"]["train"]["slurm_partition"]


def local_rules() -> set[str]:
    """The rules that run where Snakemake runs (``localrule: True`` in workflow/rules)."""
    import re

    text = "\n".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    blocks = re.finditer(r"^[ \t]*rule (\w+):\n(.*?)(?=^[ \t]*rule |\Z)", text, re.M | re.S)
    return {m.group(1) for m in blocks if re.search(r"^\s+localrule: True", m.group(2), re.M)}


def planned_submissions(dry_run: str) -> dict[str, int]:
    """What a cluster run of a dry run's plan submits: each group job once, and each job of a rule that
    is not local and in no group (jobs inside a group are indented under its 'Group job' line)."""
    import re
    from collections import Counter

    local = local_rules() | {"all"}
    count = Counter(m.group(1) for m in re.finditer(r"^rule (\w+):", dry_run, re.M) if m.group(1) not in local)
    count["group"] = len(re.findall(r"Group job \w+", dry_run))
    return dict(count)


def test_the_paper_grid_submits_at_most_60_jobs(tmp_path):
    """The full TrueFace grid (8 models x 5 train sets, 200 cells, 8 explained cells) planned with the
    real profile on a generated stand-in tree: one group job per trained model (its training and the
    GPU jobs that read its weights), the manifest and the cache; the 200 metrics cells, the montage
    and the reports run locally."""
    from deepfake_xai.data.synth import SynthConfig, generate

    generate(tmp_path / "standin", SynthConfig(real=8), progress=False)
    (tmp_path / "standin.yaml").write_text(f"data:\n  root: {tmp_path / 'standin'}\n")
    proc = subprocess.run([str(Path(os.sys.executable).with_name("snakemake")), "-n", "--workflow-profile",
                           str(REPO / "workflow/profiles/slurm"), "--configfile", "config/trueface.yaml",
                           str(tmp_path / "standin.yaml")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = planned_submissions(proc.stdout + proc.stderr)
    assert planned == {"group": 40, "manifest": 1, "cache": 1}, planned
    assert sum(planned.values()) <= 60
    assert {"metrics", "montage", "report", "xai_report", "download", "pretrained"} <= local_rules()


class _Resources(dict):
    __getattr__ = dict.__getitem__


def test_profile_gives_gpu_jobs_their_cpus_per_gpu_and_cpu_jobs_their_threads():
    """What the SLURM jobstep plugin turns the profile into (its own function): an explicit
    cpus_per_task wins over cpus_per_gpu, so a default cpus_per_task must not reach the GPU rules."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting

    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    for rule, threads in profile["set-threads"].items():
        res = _Resources({**profile["default-resources"], **profile["set-resources"].get(rule, {})})
        job = SimpleNamespace(threads=threads, resources=res)
        if rule in GPU_RULES:
            assert get_cpu_setting(job, gpu=True) == f"--cpus-per-gpu={res['cpus_per_gpu']}", rule
        else:
            assert get_cpu_setting(job, gpu=False) == f"--cpus-per-task={threads}", rule
    manifest = SimpleNamespace(threads=16, resources=_Resources(
        {**profile["default-resources"], **profile["set-resources"]["manifest"]}))
    assert get_cpu_setting(manifest, gpu=False) == "--cpus-per-task=16"  # the rule's own threads


def _test_profile(dst: Path) -> Path:
    """The project's SLURM profile adapted to the test cluster: its partition, no account, one CPU per GPU."""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    profile["default-resources"].update(slurm_partition="debug", mem_mb=1000)
    profile["default-resources"].pop("slurm_account")
    for res in profile["set-resources"].values():  # the GPU rules keep cpus_per_gpu, as in the real profile
        res.update(slurm_partition="debug", mem_mb=1000, runtime=10)
        res["cpus_per_gpu" if "cpus_per_gpu" in res else "cpus_per_task"] = 1
    profile["set-threads"] = {k: 1 for k in profile["set-threads"]}
    # one test node of 2 CPUs and 2 GPUs: a group job (a model's training, heatmaps, scores) asks for one
    # GPU and one CPU, so the two models' group jobs share the node
    profile.update({"cores": 1, "jobs": 2, "latency-wait": 5, "slurm-init-seconds-before-status-checks": 2,
                    "max-status-checks-per-second": 10, "seconds-between-status-checks": 2,
                    "slurm-status-command": "squeue", "slurm-no-account": True,
                    "slurm-keep-successful-logs": True})  # read by the test: what ran in each submission
    dst.mkdir(parents=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(profile))
    return dst


def test_tiny_grid_on_slurm_submits_grouped_jobs_equals_a_local_run_and_a_failure_fails(slurm, tmp_path):
    cluster = copy_repo(tmp_path / "cluster")
    local = copy_repo(tmp_path / "local")
    # the tiny grid cut to its pre-social trainings (2 models; the 4 explained cells are theirs)
    cfg = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())
    cfg["grid"] = [{"models": ["mnasnet_100", "efficientnet_b0"], "train_sets": ["presocial"]}]
    for wd in (cluster, local):
        (wd / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    profile = _test_profile(tmp_path / "profile")

    t0 = time.perf_counter()
    # the local reference runs meanwhile: the cluster run mostly waits on the scheduler
    reference = subprocess.Popen([str(Path(os.sys.executable).with_name("snakemake")), CELL, "--cores", "1",
                                  "--configfile", "tiny.yaml"], cwd=local, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    # the whole (cut) tiny grid (2 trainings, 10 cells, 4 explained cells): what it submits is grouped
    snakemake = str(Path(os.sys.executable).with_name("snakemake"))
    dry = subprocess.run([snakemake, "-n", "--workflow-profile", str(profile), "--configfile", "tiny.yaml"],
                         cwd=cluster, env=slurm, capture_output=True, text=True, timeout=120)
    planned = planned_submissions(dry.stdout + dry.stderr)
    assert planned == {"synthesize": 1, "extract": 1, "manifest": 1, "cache": 1, "group": 2}, planned
    proc = subprocess.run([snakemake, "--workflow-profile", str(profile), "--configfile", "tiny.yaml"], cwd=cluster,
                          env=slurm, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(set(submitted)) == len(submitted) == sum(planned.values()), (submitted, planned)
    # each trained model's GPU work ran in its one allocation: its training, heatmaps and their scores
    job_logs = [Path(p) if Path(p).is_absolute() else cluster / p
                for p in re.findall(r"has been submitted with SLURM jobid \d+ \(log: ([^)]+)\)", log)]
    texts = [p.read_text() for p in job_logs if p.is_file()]
    assert len(texts) == len(submitted), job_logs
    assert sum("rule train" in t and "rule explain" in t and "rule xai_metrics" in t for t in texts) == 2, job_logs
    # each group job asked for one GPU (--gpus=1) and the scheduler allocated it one; the others none
    groups = set(re.findall(r"Job [0-9a-f-]{36} has been submitted with SLURM jobid (\d+)", log))
    assert len(groups) == 2, log[-3000:]
    spans = []
    for jobid in submitted:
        shown = subprocess.run(["scontrol", "-d", "show", "job", jobid], env=slurm, capture_output=True,
                               text=True).stdout
        assert "JobState=COMPLETED" in shown, shown
        if jobid in groups:
            spans.append(re.search(r"StartTime=(\S+) EndTime=(\S+)", shown).groups())
            # asked: one GPU, with cpus_per_gpu; allocated (JOB_GRES): one of the node's two
            # (SLURM 22.05 writes gres:gpu:1, later releases gres/gpu:1)
            assert re.search(r"TresPerJob=gres[:/]gpu:1\b", shown) and re.search(r"CpusPerTres=gres[:/]gpu:1\b", shown), shown
            assert re.search(r"^\s*JOB_GRES=gpu(:\w+)?:1\b", shown, re.M), shown
        else:
            assert "gpu" not in shown.lower(), shown
    # the GPU limit is per submitted job (gpu a local resource): the two models' groups ran at the same time,
    # one GPU each, instead of queueing behind one cluster-wide GPU
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    assert (cluster / "reports/tiny/xai/ranking.md").exists()
    elapsed = time.perf_counter() - t0
    assert reference.wait(timeout=420) == 0, reference.stderr.read()[-3000:]
    assert json.loads((cluster / CELL).read_text()) == json.loads((local / CELL).read_text())
    print(f"SLURM run of the tiny grid: {elapsed:.1f} s, {len(submitted)} submissions")

    # a failing SLURM job must end the run with an error, not hang: the manifest replaced by bytes that
    # are no Parquet file, so the cache job (submitted) fails reading it
    (cluster / CELL).unlink()
    (cluster / "results/tiny/manifest.parquet").write_bytes(b"not a parquet file")
    proc = subprocess.run([snakemake, CELL, "--workflow-profile", str(profile), "--configfile", "tiny.yaml",
                           "--retries", "0"], cwd=cluster, env=slurm, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "has been submitted with SLURM jobid" in proc.stdout + proc.stderr
    assert "Error in rule cache" in proc.stdout + proc.stderr
    assert not (cluster / CELL).exists()
