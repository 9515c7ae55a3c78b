# Stage 3, evaluation: one metrics file per (model, train set, test set) table cell, from the
# predictions each training job writes (rule train, in train.smk).


rule metrics:
    input:
        predictions=f"{RESULTS}/predictions/{{model}}/{{train_set}}/{{test_set}}.parquet",
    output:
        f"{RESULTS}/metrics/{{model}}/{{train_set}}/{{test_set}}.json",
    params:
        code=code_digest("metrics"),
        py=PY,
        threshold=config["evaluate"]["threshold"],
        bootstrap=config["evaluate"]["bootstrap"],
        seed=config["evaluate"]["seed"],
    log:
        f"{LOGS}/metrics/{{model}}/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/metrics/{{model}}/{{train_set}}/{{test_set}}.tsv"
    wildcard_constraints:
        test_set="presocial|facebook|telegram|twitter|combined",
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/metrics.py --predictions {input.predictions:q} --out {output:q} "
        "--threshold {params.threshold} --bootstrap {params.bootstrap} --seed {params.seed} "
        "--model {wildcards.model:q} --train-set {wildcards.train_set:q} "
        "--test-set {wildcards.test_set:q} > {log:q} 2>&1"
