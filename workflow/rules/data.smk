# Stage 1, data: generate or download the dataset, then the Parquet manifest with leakage-free splits.

# Every generated dataset arrives as archives in resources/{dataset}/archives/ (the synthetic set as
# one deterministic tar, TrueFace as your mirror's files): the archives are what DVC versions, and
# one extraction path serves both.
if DATA_GENERATED and DATA_CFG["source"] == "synthetic":

    rule synthesize:
        output:
            f"resources/{DATASET}/archives/synthetic.tar",
        params:
            code=code_digest("synth"),
            py=PY,
            cfg=as_json({**dxcfg.without_speed_keys(DATA_CFG["synthetic"]), "platforms": DATA_CFG["platforms"]}),
        log:
            f"{LOGS}/synthesize.log",
        benchmark:
            f"{BENCH}/synthesize.tsv"
        threads: DATA_CFG["synthetic"]["workers"]
        conda:
            "../../environment.yml"
        shell:
            "{params.py} workflow/scripts/synth.py --archive {output:q} --config-json {params.cfg:q} "
            "--workers {threads} > {log:q} 2>&1"


if DATA_GENERATED and DATA_CFG["source"] == "trueface":

    rule download:
        output:
            f"resources/{DATASET}/archives/{{archive}}",
        params:
            py=PY,
            url=lambda wc: ARCHIVES[wc.archive]["url"],
            sha256=lambda wc: ARCHIVES[wc.archive]["sha256"],
        log:
            f"{LOGS}/download/{{archive}}.log",
        benchmark:
            f"{BENCH}/download/{{archive}}.tsv"
        conda:
            "../../environment.yml"
        wildcard_constraints:
            archive="|".join(re.escape(a) for a in ARCHIVES),
        shell:
            "{params.py} workflow/scripts/download.py --url {params.url:q} --sha256 {params.sha256:q} "
            "--out {output:q} > {log:q} 2>&1"


if DATA_GENERATED:

    rule extract:
        input:
            archives=archive_files(),
        output:
            directory(DATA_ROOT),
        params:
            code=code_digest("extract"),
            py=PY,
        log:
            f"{LOGS}/extract.log",
        benchmark:
            f"{BENCH}/extract.tsv"
        conda:
            "../../environment.yml"
        shell:
            "{params.py} workflow/scripts/extract.py {input.archives:q} --out {output:q} > {log:q} 2>&1"


rule manifest:
    input:
        root=DATA_ROOT,
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        rejected=f"{RESULTS}/rejected.parquet",
        summary=report(f"{RESULTS}/manifest_summary.csv", caption="../report/manifest.rst",
                       category="1. Data", labels={"table": "manifest summary"}),
    params:
        code=code_digest("manifest"),
        py=PY,
        dataset=DATASET,
        cfg=as_json(dxcfg.manifest_config(config)),
        test_parts=dxcfg.required_test_parts(config),
    log:
        f"{LOGS}/manifest.log",
    benchmark:
        f"{BENCH}/manifest.tsv"
    threads: DATA_CFG["workers"]
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/manifest.py --root {input.root:q} --dataset {params.dataset:q} "
        "--out {output.manifest:q} --rejected {output.rejected:q} --summary {output.summary:q} "
        "--config-json {params.cfg:q} --require-test-parts {params.test_parts:q} --workers {threads} > {log:q} 2>&1"
