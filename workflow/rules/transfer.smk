# Stage 3b, cross-dataset cells: a model trained on the main dataset, tested on a transfer dataset's
# parts. Each cell is one file (paths.transfer_metrics); naming it builds the transfer dataset's
# manifest and cache, the model's training (on the main dataset, if missing) and nothing else.


rule transfer_predict:
    # One job per part: the parts of a transfer dataset are its own (a rule's outputs cannot vary by
    # wildcard), and a cross-dataset cell is cheap beside a training.
    input:
        unpack(transfer_cache),
        weights=paths.weights(DATASET, "{model}", "{train_set}"),
        manifest=paths.manifest("{target}"),
    output:
        paths.transfer_predictions(DATASET, "{target}", "{model}", "{train_set}", "{part}"),
    params:
        code=code_digest("predict"),
        py=PY,
        options=lambda wc: stage_options("predict", wc.target),
        settings=settings_json,
    log:
        f"{LOGS}/transfer/{{target}}/predict/{{model}}/{{train_set}}/{{part}}.log",
    benchmark:
        f"{BENCH}/transfer/{{target}}/predict/{{model}}/{{train_set}}/{{part}}.tsv"
    wildcard_constraints:
        target="|".join(re.escape(t) for t in config["transfer"]) or "^$",
    threads: stage_speed("predict", "threads")
    resources:
        gpu=COMPUTE["gpus_per_job"],
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai predict --weights {input.weights:q} --cache {input.cache_npy:q} "
        "--cache-index {input.cache_index:q} --manifest {input.manifest:q} --settings-json {params.settings:q} "
        "--parts {wildcards.part:q} --out {output:q} {params.options} --threads {threads} > {log:q} 2>&1"


rule transfer_pool:
    # sub-second file concatenation: runs where Snakemake runs
    localrule: True
    input:
        lambda wc: [paths.transfer_predictions(DATASET, wc.target, wc.model, wc.train_set, p)
                    for p in data_cfg(wc.target)["parts"]],
    output:
        paths.transfer_predictions(DATASET, "{target}", "{model}", "{train_set}", sets.COMBINED),
    params:
        code=code_digest("pool"),
        py=PY,
    log:
        f"{LOGS}/transfer/{{target}}/pool/{{model}}/{{train_set}}.log",
    benchmark:
        f"{BENCH}/transfer/{{target}}/pool/{{model}}/{{train_set}}.tsv"
    wildcard_constraints:
        target="|".join(re.escape(t) for t in config["transfer"]) or "^$",
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai pool {input:q} --out {output:q} > {log:q} 2>&1"



rule transfer_metrics:
    # sub-second: runs where Snakemake runs
    localrule: True
    input:
        predictions=paths.transfer_predictions(DATASET, "{target}", "{model}", "{train_set}", "{test_set}"),
    output:
        paths.transfer_metrics(DATASET, "{target}", "{model}", "{train_set}", "{test_set}"),
    params:
        code=code_digest("metrics"),
        py=PY,
        options=stage_options("metrics"),
    log:
        f"{LOGS}/transfer/{{target}}/metrics/{{model}}/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/transfer/{{target}}/metrics/{{model}}/{{train_set}}/{{test_set}}.tsv"
    wildcard_constraints:
        target="|".join(re.escape(t) for t in config["transfer"]) or "^$",
        test_set="|".join(dict.fromkeys(s for t in config["transfer"].values() for s in t["test_sets"])) or "^$",
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai metrics --predictions {input.predictions:q} --out {output:q} "
        "--model {wildcards.model:q} --train-set {wildcards.train_set:q} --test-set {wildcards.test_set:q} "
        "--test-dataset {wildcards.target:q} {params.options} > {log:q} 2>&1"
