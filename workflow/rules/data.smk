# Stage 1, data: generate or download the dataset, then the Parquet manifest with leakage-free splits.

# Every generated dataset arrives as archives in resources/{dataset}/archives/ (the synthetic set as
# one deterministic tar, TrueFace as your mirror's files): the archives are what DVC versions, and
# one extraction path serves both.
if DATA_GENERATED and DATA_CFG["source"] == "synthetic":

    rule synthesize:
        output:
            paths.archive(DATASET, "synthetic.tar"),
        params:
            code=code_digest("synth"),
            py=PY,
            options=stage_options("synth"),
        log:
            f"{LOGS}/synthesize.log",
        benchmark:
            f"{BENCH}/synthesize.tsv"
        threads: stage_speed("synth", "workers")
        conda:
            "../../environment.yml"
        shell:
            "{params.py} -m deepfake_xai synth --archive {output:q} {params.options} "
            "--workers {threads} > {log:q} 2>&1"


if DATA_GENERATED and DATA_CFG["source"] != "synthetic":

    rule download:
        output:
            paths.archive(DATASET, "{archive}"),
        params:
            py=PY,
            url=lambda wc: ARCHIVES[wc.archive]["url"],
            sha256=lambda wc: ARCHIVES[wc.archive]["sha256"],
        log:
            f"{LOGS}/download/{{archive}}.log",
        benchmark:
            f"{BENCH}/download/{{archive}}.tsv"
        wildcard_constraints:
            archive="|".join(re.escape(a) for a in ARCHIVES),
        conda:
            "../../environment.yml"
        shell:
            "{params.py} -m deepfake_xai download --url {params.url:q} --sha256 {params.sha256:q} "
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
            "{params.py} -m deepfake_xai extract {input.archives:q} --out {output:q} > {log:q} 2>&1"


rule manifest:
    input:
        **manifest_inputs(),
    output:
        manifest=paths.manifest(DATASET),
        rejected=paths.rejected(DATASET),
        summary=report(paths.manifest_summary(DATASET), caption="../report/manifest.rst",
                       category="1. Data", labels={"table": "manifest summary"}),
    params:
        code=code_digest("manifest"),
        py=PY,
        options=stage_options("manifest"),
    log:
        f"{LOGS}/manifest.log",
    benchmark:
        f"{BENCH}/manifest.tsv"
    threads: stage_speed("manifest", "workers")
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai manifest --root {input.root:q} --out {output.manifest:q} "
        "--rejected {output.rejected:q} --summary {output.summary:q} {params.options} "
        "--workers {threads} > {log:q} 2>&1"
