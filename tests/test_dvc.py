"""The same DAG under real `dvc repro` in a temporary git repository: builds, no-op reruns, what
re-runs after a config change, parity with Snakemake's outputs, push/pull of weights."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_repo, run_snakemake
from test_workflow import planned_jobs

pytestmark = pytest.mark.workflow
BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def sh(wd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=wd, env=ENV, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def dvc_repo(wd: Path, edit=lambda cfg: None) -> Path:
    """The workflow in a fresh git repository with params.yaml for the cut tiny config (``edit`` may
    change it further)."""
    copy_repo(wd)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config"):
        (wd / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, wd / name)
    shutil.copytree(REPO / "src", wd / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # the tiny config cut to one train set and one explained test set: DVC runs stages one at a time
    cfg = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())
    cfg["grid"] = [{"models": ["mnasnet_100", "efficientnet_b0"], "train_sets": ["presocial"]}]
    cfg["explain"]["cells"] = [{"train_sets": ["presocial"], "test_sets": ["presocial"]}]
    edit(cfg)
    (wd / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    sh(wd, sys.executable, "workflow/scripts/dvc_params.py", "--config", "tiny.yaml")
    sh(wd, "git", "init", "-q")
    sh(wd, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", "--allow-empty")
    sh(wd, "git", "add", "-A")
    sh(wd, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "workflow")
    return wd


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _speed(cfg, threads=2, workers=3):
    cfg.setdefault("compute", {}).update(train_threads=threads, predict_threads=threads, cache_workers=workers)
    cfg["data"]["workers"] = workers
    cfg["data"]["synthetic"]["workers"] = workers
    cfg["train"]["loader_workers"] = workers
    cfg["models"]["mnasnet_100"] = {**(cfg["models"].get("mnasnet_100") or {}), "loader_workers": workers + 1}


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    wd = dvc_repo(tmp_path_factory.mktemp("dvc") / "wd", edit=_speed)
    first = sh(wd, "dvc", "repro")
    return wd, first.stdout + first.stderr


def test_params_yaml_in_the_repo_matches_the_default_config(tmp_path):
    sh(REPO, sys.executable, "workflow/scripts/dvc_params.py", "--config", "config/config.yaml",
       "--out", str(tmp_path / "params.yaml"))
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text(), \
        "params.yaml is stale: run python workflow/scripts/dvc_params.py --config config/config.yaml"


def refused_params(tmp_path: Path, cfg: dict) -> subprocess.CompletedProcess:
    """dvc_params.py run on ``cfg``: it must fail and write no params.yaml; its output is returned."""
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, str(REPO / "workflow/scripts/dvc_params.py"), "--config",
                           str(tmp_path / "m.yaml"), "--out", str(tmp_path / "params.yaml")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and not (tmp_path / "params.yaml").exists(), proc.stdout
    return proc


def test_archive_names_that_share_a_dvc_key_are_refused(tmp_path):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["dataset"] = "mirror"
    cfg["data"].update(source="trueface", download=[{"url": "https://m/a.b.zip", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"},
                                                    {"url": "https://m/a_b.zip", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}])
    proc = refused_params(tmp_path, cfg)
    assert "'a_b.zip' and 'a.b.zip' give one DVC key" in proc.stderr


def test_a_model_name_with_a_dot_is_refused_for_dvc_and_its_fix_named(tmp_path):
    """dvc.yaml tracks ``settings.<model>``: a dotted name would be read as a nested key."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["models"]["vit_small_patch16_224.augreg_in21k"] = {"arch": "vit_small_patch16_224.augreg_in21k"}
    proc = refused_params(tmp_path, cfg)
    assert "models.vit_small_patch16_224.augreg_in21k" in proc.stderr
    assert "'vit_small_patch16_224_augreg_in21k'" in proc.stderr and "arch:" in proc.stderr


@pytest.fixture
def mirror(tmp_path):
    """Two TrueFace-like zip archives served over HTTP on 127.0.0.1."""
    import functools
    import http.server
    import threading
    import zipfile

    root = tmp_path / "mirror"
    for part, member in (("pre", "TrueFace_PreSocial/Real/FFHQ/00000.png"),
                         ("post", "TrueFace_PostSocial/Telegram/Real/FFHQ/00000_TL.jpeg")):
        (root / part).mkdir(parents=True)
        with zipfile.ZipFile(root / part / f"{part}.zip", "w") as zf:
            zf.writestr(member, part.encode())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield {part: {"url": f"http://127.0.0.1:{srv.server_address[1]}/{part}/{part}.zip",
                  "sha256": hashlib.sha256((root / part / f"{part}.zip").read_bytes()).hexdigest()}
           for part in ("pre", "post")}
    srv.shutdown()
    srv.server_close()


def test_dvc_downloads_are_pinned_by_checksum_and_only_configured_archives_are_extracted(tmp_path, mirror):
    def trueface(cfg):
        cfg["dataset"] = "mirror"
        cfg["data"].update(source="trueface", download=[mirror["pre"], mirror["post"]])

    wd = dvc_repo(tmp_path / "wd", edit=trueface)
    out = sh(wd, "dvc", "repro", "extract")
    assert ran_stages(out.stdout + out.stderr) == {"download@pre_zip", "download@post_zip", "extract"}
    data = wd / "resources/mirror/data"
    assert (data / "TrueFace_PreSocial/Real/FFHQ/00000.png").read_bytes() == b"pre"
    # the downloader's and the manifest's code change: nothing is downloaded again
    for name in ("download.py", "manifest.py"):
        with open(wd / "src/deepfake_xai/data" / name, "a") as fh:
            fh.write("\n# edited\n")
    # a file left in the archives folder is not part of the dataset
    shutil.copy(wd / "resources/mirror/archives/pre.zip", wd / "resources/mirror/archives/stray.zip.part")
    out = sh(wd, "dvc", "repro", "extract")
    assert not ran_stages(out.stdout + out.stderr)  # a download in progress (.part) is not a change either
    assert sorted(p.name for p in data.iterdir()) == ["TrueFace_PostSocial", "TrueFace_PreSocial"]
    # an archive dropped from the config is no longer extracted
    cfg = yaml.safe_load((wd / "tiny.yaml").read_text())
    cfg["data"]["download"] = [mirror["post"]]
    (wd / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    sh(wd, sys.executable, "workflow/scripts/dvc_params.py", "--config", "tiny.yaml")
    out = sh(wd, "dvc", "repro", "extract")
    assert "extract" in ran_stages(out.stdout + out.stderr)
    assert sorted(p.name for p in data.iterdir()) == ["TrueFace_PostSocial"]


def test_dvc_repro_builds_every_cell_and_a_second_run_does_nothing(repro):
    wd, out = repro
    cells = sorted(p.relative_to(wd).as_posix() for p in (wd / "results/tiny/metrics").rglob("*.json"))
    assert len(cells) == 10
    assert len([s for s in ran_stages(out) if s.startswith("train@")]) == 2
    again = sh(wd, "dvc", "repro")
    assert ran_stages(again.stdout) == set()
    assert "Data and pipelines are up to date" in again.stdout


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def assert_same_outputs_as_snakemake(wd: Path, scratch: Path) -> None:
    """dvc.yaml's outputs for ``wd``'s params.yaml are the files `snakemake -n` plans for tiny.yaml."""
    from dvc.repo import Repo

    with Repo(str(wd)) as repo:
        dvc_outs = {str(o.def_path) for stage in repo.index.stages for o in stage.outs}
    sm = copy_repo(scratch)
    shutil.copy(wd / "tiny.yaml", sm / "tiny.yaml")
    dry = run_snakemake(sm, "-n", "--configfile", "tiny.yaml")
    smk_outs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry.stdout):
        m = re.search(r"\n\s+output: ([^\n]+)", block)
        if m and not block.strip().startswith("rule all"):
            smk_outs |= {o.strip() for o in m.group(1).split(",")}
    # dvc.yaml declares the report's tables/ and figures/ as folders; Snakemake names each file
    assert all(any(_inside(o, d) for d in dvc_outs) for o in smk_outs), smk_outs - dvc_outs
    assert all(any(_inside(o, d) for o in smk_outs) for d in dvc_outs), dvc_outs - smk_outs
    # ... and each training stage's predictions as one folder (its files depend on the test sets)
    def file_level(path: str) -> bool:
        return not path.startswith("reports/") and "/predictions/" not in path

    assert {o for o in smk_outs if file_level(o)} == {d for d in dvc_outs if file_level(d)}


def test_each_dvc_stage_depends_on_the_code_its_command_runs():
    """A stage's code deps are every package file its stage module runs (DVC tracks files; Snakemake
    tracks the same code by digest, see test_provenance.py), so an edit re-runs the same stages under
    either tool. A download runs no project code: pinned by its checksum alone."""
    from dvc.repo import Repo

    from deepfake_xai.provenance import PACKAGE, code_files

    with Repo(str(REPO)) as repo:
        stages = list(repo.index.stages)
    checked = set()
    for stage in stages:
        command = re.search(r"-m deepfake_xai ([\w-]+)", stage.cmd).group(1)
        code = {str(d.def_path) for d in stage.deps if str(d.def_path).startswith(("src/", "workflow/"))}
        want = {f"src/deepfake_xai/{p.relative_to(PACKAGE).as_posix()}" for p in code_files(command)}
        assert code == want, (f"dvc.yaml, stage {stage.name}: the code deps should be exactly\n"
                              + "\n".join(f"- {f}" for f in sorted(want)))
        checked.add(stage.name.split("@")[0])
    assert checked == {"synthesize", "extract", "manifest", "cache", "train", "metrics", "explain", "montage",
                       "actmax", "xai", "xai_report", "report", "transfer_synthesize", "transfer_extract",
                       "transfer_manifest", "transfer_cache", "transfer_predict", "transfer_metrics"}
    download = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["download"]["do"]
    assert "deps" not in download


def test_dvc_outputs_equal_snakemakes_for_the_same_config(repro, tmp_path):
    wd, _ = repro
    assert_same_outputs_as_snakemake(wd, tmp_path / "sm")


def _xai_off(cfg):
    cfg["xai"]["enabled"] = False


def _no_twitter(cfg):
    cfg["test_sets"] = ["presocial", "facebook", "telegram"]


@pytest.mark.parametrize("edit", [_xai_off, _no_twitter], ids=["xai off", "test sets without twitter"])
def test_every_dependency_is_built_or_tracked_and_outputs_equal_snakemakes(tmp_path, edit):
    """`xai.enabled: false`: no explanation-quality stage, and nothing depends on its files. Test sets
    without Twitter (so no "combined"): the training stages predict only the three parts. Else
    `dvc repro` would stop at a missing dependency or an output never written."""
    from dvc.repo import Repo

    wd = dvc_repo(tmp_path / "wd", edit=edit)
    with Repo(str(wd)) as repo:
        stages = list(repo.index.stages)
    names = {s.name.split("@")[0] for s in stages}
    if edit is _xai_off:
        assert "explain" in names and not names & {"xai", "xai_report"}, names
    else:
        train = next(s for s in stages if s.name.startswith("train@"))
        assert "twitter" not in train.cmd and "combined" not in train.cmd and "telegram.parquet" in train.cmd
    outs = {str(o.def_path) for s in stages for o in s.outs}
    for stage in stages:
        for dep in stage.deps:
            path = str(dep.def_path)
            built = any(_inside(path, o) or _inside(o, path) for o in outs)
            assert built or (wd / path).exists(), f"{stage.name} depends on {path}: no stage writes it"
    assert_same_outputs_as_snakemake(wd, tmp_path / "sm")


def test_speed_keys_reach_the_jobs_and_changing_them_reruns_nothing(repro):
    """Threads and worker counts are in no stage's command or tracked values: the jobs read them from
    params.yaml at run time, so a machine with more cores (a new params.yaml) re-runs nothing."""
    wd, _ = repro
    for model, loader in (("mnasnet_100", 4), ("efficientnet_b0", 3)):
        summary = json.loads((wd / f"results/tiny/models/{model}/presocial/train.json").read_text())
        assert (summary["threads"], summary["settings"]["loader_workers"]) == (2, loader)
    cfg = yaml.safe_load((wd / "tiny.yaml").read_text())
    _speed(cfg, threads=1, workers=5)
    (wd / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    sh(wd, sys.executable, "workflow/scripts/dvc_params.py", "--config", "tiny.yaml")
    speed = yaml.safe_load((wd / "params.yaml").read_text())["speed"]
    assert speed["train"] == {"threads": 1, "loader_workers": {"mnasnet_100": 6, "efficientnet_b0": 5}}
    status = sh(wd, "dvc", "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout


def test_speed_file_fills_only_what_the_command_line_leaves_unset(tmp_path):
    from deepfake_xai import config as dxcfg
    from deepfake_xai.cli import build_parser, parse
    from deepfake_xai.stages import wiring
    from deepfake_xai.stages.plumbing import apply_speed_file

    written = wiring.speed_section(dxcfg.load([str(REPO / "config/config.yaml")]))
    parser_speed = {c: set(build_parser().parse_args([c, *_required(c)]).speed_options) for c in written}
    assert {c: set(o) for c, o in written.items()} == parser_speed
    assert set(written) == {"synth", "manifest", "cache", "train", "predict", "explain-cell", "actmax", "xai-cell"}

    speed = tmp_path / "params.yaml"
    speed.write_text(yaml.safe_dump({"speed": {"train": {"threads": 3, "loader_workers": {"m": 4}},
                                               "cache": {"workers": 0}}}))
    train = ["train", "--cache", "c", "--cache-index", "i", "--manifest", "x", "--dataset", "d", "--settings-json",
             "{}", "--train-set", "presocial", "--out-dir", "o", "--model", "m", "--speed", str(speed)]

    def parsed(*argv):
        return parse(list(argv))

    args = parsed(*train)
    assert (args.threads, args.loader_workers) == (3, 4)
    args = parsed(*train, "--threads", "1")
    assert (args.threads, args.loader_workers) == (1, 4)
    with pytest.raises(SystemExit, match=r"speed\.train\.loader_workers has no entry for model 'other'"):
        parsed(*[a if a != "m" else "other" for a in train])
    with pytest.raises(SystemExit, match=r"speed\.cache\.workers must be a positive integer, not 0"):
        parsed("cache", "--manifest", "x", "--dataset", "d", "--root", "r", "--out", "o", "--index", "i",
               "--center-crop", "8", "--speed", str(speed))
    speed.write_text(yaml.safe_dump({"speed": {"cache": 4}}))
    with pytest.raises(SystemExit, match=r"speed\.cache must be a mapping of option names to values, not 4"):
        parsed("cache", "--manifest", "x", "--dataset", "d", "--root", "r", "--out", "o", "--index", "i",
               "--center-crop", "8", "--speed", str(speed))
    speed.write_text("compute: {}\n")
    with pytest.raises(SystemExit, match=f"--speed {speed}: no `speed` section"):
        parsed(*train)
    args = build_parser().parse_args(train[:-2])  # no file: the documented default
    apply_speed_file(args, args.speed_options)
    assert (args.threads, args.loader_workers) == (1, None)


def _required(command: str) -> list[str]:
    """Placeholder values of a stage's required options: enough to parse its command line."""
    from deepfake_xai.stages import wiring

    words = []
    for option in wiring.stage(command).OPTIONS:
        if option.positional:
            words.append("x")
        elif option.required:
            words += [option.flag, "{}" if option.dest == "settings_json" else "1"]
    return words


def test_changing_one_models_lr_reruns_exactly_its_stages(repro):
    wd, _ = repro
    cfg = yaml.safe_load((wd / "tiny.yaml").read_text())
    cfg["models"]["mnasnet_100"] = {"lr": 0.002}
    (wd / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    sh(wd, sys.executable, "workflow/scripts/dvc_params.py", "--config", "tiny.yaml")
    ran = ran_stages(sh(wd, "dvc", "repro").stdout)
    assert {s.split("@")[0] for s in ran} == {"train", "metrics", "explain", "actmax", "montage", "report", "xai", "xai_report"}
    assert all(s.split("@")[1].startswith("mnasnet_100-") for s in ran if s.split("@")[0] not in ("montage", "report", "xai_report")), ran
    assert len([s for s in ran if s.startswith("train@")]) == 1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_push_delete_pull_restores_weights_and_snakemake_has_nothing_to_do(repro):
    wd, _ = repro
    sh(wd, "git", "add", "-A")
    sh(wd, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    weights = sorted((wd / "results/tiny/models").rglob("model.safetensors"))
    before = {p: _sha(p) for p in weights}
    sh(wd, "dvc", "push")
    # a colleague's fresh clone: no results, no DVC cache, no Snakemake metadata
    clone = wd.parent / "clone"
    sh(wd.parent, "git", "clone", "-q", str(wd), str(clone))
    shutil.copy2(wd / "tiny.yaml", clone / "tiny.yaml")
    sh(clone, "dvc", "pull")
    for p, digest in before.items():
        assert _sha(clone / p.relative_to(wd)) == digest
    sh(clone, "snakemake", "--touch", "--cores", "1", "--configfile", "tiny.yaml")  # the documented step
    dry = run_snakemake(clone, "-n", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in dry.stdout + dry.stderr, planned_jobs(dry.stdout)


def test_dvc_exp_run_sets_a_model_setting_that_reaches_the_job_and_exp_show_lists_the_cells(repro):
    """DVC's own habit: `dvc exp run -S settings.<model>.<key>=value` edits params.yaml, the stages that
    track that model's settings re-run, and the job reads the new value (the stages read their settings
    from params.yaml itself, @params.yaml#settings/<model>); `dvc exp show` lists every cell's metrics."""
    wd, _ = repro
    sh(wd, "git", "add", "-A")
    sh(wd, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "before the experiment", check=False)
    # (the metrics stages and what they need: the explanation stages are not part of this check)
    run = sh(wd, "dvc", "exp", "run", "-n", "lr-test", "-S", "settings.efficientnet_b0.lr=1e-5", "metrics")
    ran = ran_stages(run.stdout + run.stderr)
    assert "train@efficientnet_b0-presocial" in ran and "train@mnasnet_100-presocial" not in ran, ran
    summary = json.loads((wd / "results/tiny/models/efficientnet_b0/presocial/train.json").read_text())
    assert summary["settings"]["lr"] == 1e-5  # DVC writes 1e-05, a YAML 1.2 float
    shown = json.loads(sh(wd, "dvc", "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "lr-test" in text and "results/tiny/metrics/efficientnet_b0/presocial/presocial.json" in text
    assert '"balanced_accuracy"' in text
