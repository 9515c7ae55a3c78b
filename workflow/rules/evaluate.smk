# Stage 3, evaluation: one metrics file per (model, train set, test set) table cell, from the
# predictions each training job writes (rule train, in train.smk).


rule metrics:
    # sub-second (numpy on one predictions file): on a cluster it runs where Snakemake runs, no queueing
    localrule: True
    input:
        predictions=paths.predictions(DATASET, "{model}", "{train_set}", "{test_set}"),
    output:
        paths.metrics(DATASET, "{model}", "{train_set}", "{test_set}"),
    params:
        code=code_digest("metrics"),
        py=PY,
        options=stage_options("metrics"),
    log:
        f"{LOGS}/metrics/{{model}}/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/metrics/{{model}}/{{train_set}}/{{test_set}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai metrics --predictions {input.predictions:q} --out {output:q} "
        "--model {wildcards.model:q} --train-set {wildcards.train_set:q} "
        "--test-set {wildcards.test_set:q} {params.options} > {log:q} 2>&1"
