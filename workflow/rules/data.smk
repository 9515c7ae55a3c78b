# Stage 1, data: generate or download each dataset, then its Parquet manifest with leakage-free splits.
# One set of rules for every dataset the config names (the main one and the transfer datasets): the
# {dataset} wildcard picks the data section.

# Every generated dataset arrives as archives in resources/{dataset}/archives/ (the synthetic set as
# one deterministic tar, TrueFace as your mirror's files): the archives are what DVC versions, and
# one extraction path serves both.
if SYNTHESIZED:

    rule synthesize:
        output:
            paths.archive("{dataset}", "synthetic.tar"),
        params:
            code=code_digest("synth"),
            py=PY,
            options=dataset_options("synth"),
        log:
            f"{paths.logs('{dataset}')}/synthesize.log",
        benchmark:
            f"{paths.benchmarks('{dataset}')}/synthesize.tsv"
        wildcard_constraints:
            dataset="|".join(re.escape(d) for d in SYNTHESIZED),
        threads: stage_speed("synth", "workers")
        conda:
            "../../environment.yml"
        shell:
            "{params.py} -m deepfake_xai synth --archive {output:q} {params.options} "
            "--workers {threads} > {log:q} 2>&1"


if DOWNLOADED:

    rule download:
        # network I/O: a cluster's login node has the network its compute nodes may lack
        localrule: True
        output:
            paths.archive("{dataset}", "{archive}"),
        params:
            py=PY,
            url=lambda wc: ARCHIVES[wc.dataset][wc.archive]["url"],
            sha256=lambda wc: ARCHIVES[wc.dataset][wc.archive]["sha256"],
        log:
            f"{paths.logs('{dataset}')}/download/{{archive}}.log",
        benchmark:
            f"{paths.benchmarks('{dataset}')}/download/{{archive}}.tsv"
        wildcard_constraints:
            dataset="|".join(re.escape(d) for d in DOWNLOADED),
            archive="|".join(re.escape(a) for d in DOWNLOADED for a in ARCHIVES[d]),
        conda:
            "../../environment.yml"
        shell:
            "{params.py} -m deepfake_xai download --url {params.url:q} --sha256 {params.sha256:q} "
            "--out {output:q} > {log:q} 2>&1"


if SYNTHESIZED or DOWNLOADED:

    rule extract:
        input:
            archives=archive_files,
        output:
            directory(paths.generated_root("{dataset}")),
        params:
            code=code_digest("extract"),
            py=PY,
        log:
            f"{paths.logs('{dataset}')}/extract.log",
        benchmark:
            f"{paths.benchmarks('{dataset}')}/extract.tsv"
        wildcard_constraints:
            dataset="|".join(re.escape(d) for d in [*SYNTHESIZED, *DOWNLOADED]),
        conda:
            "../../environment.yml"
        shell:
            "{params.py} -m deepfake_xai extract {input.archives:q} --out {output:q} > {log:q} 2>&1"


rule manifest:
    input:
        unpack(manifest_inputs),
    output:
        manifest=paths.manifest("{dataset}"),
        rejected=paths.rejected("{dataset}"),
        summary=report(paths.manifest_summary("{dataset}"), caption="../report/manifest.rst",
                       category="1. Data", labels={"table": "manifest summary"}),
    params:
        code=code_digest("manifest"),
        py=PY,
        options=dataset_options("manifest"),
    log:
        f"{paths.logs('{dataset}')}/manifest.log",
    benchmark:
        f"{paths.benchmarks('{dataset}')}/manifest.tsv"
    threads: stage_speed("manifest", "workers")
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai manifest --root {input.root:q} --out {output.manifest:q} "
        "--rejected {output.rejected:q} --summary {output.summary:q} {params.options} "
        "--workers {threads} > {log:q} 2>&1"
