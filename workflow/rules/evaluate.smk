# Stage 3, evaluation: predictions per test part and the pooled "combined" test set, then one
# metrics file per (model, train set, test set) table cell.


rule predict:
    # One job predicts the four test parts and pools them into "combined" (no second inference):
    # loading torch and the model costs more than inference on a part, and one cell still
    # triggers only its own model's jobs.
    input:
        unpack(cache_inputs),
        manifest=f"{RESULTS}/manifest.parquet",
        weights=f"{RESULTS}/models/{{model}}/{{train_set}}/model.safetensors",
    output:
        parts=expand(f"{RESULTS}/predictions/{{{{model}}}}/{{{{train_set}}}}/{{part}}.parquet", part=PARTS),
        combined=f"{RESULTS}/predictions/{{model}}/{{train_set}}/combined.parquet",
    params:
        py=PY,
        dataset=DATASET,
        settings=settings_json,
        parts=PARTS,
        batch_size=config["evaluate"]["batch_size"],
        device=COMPUTE["device"] or "auto",
    log:
        f"{LOGS}/predict/{{model}}/{{train_set}}.log",
    benchmark:
        f"{BENCH}/predict/{{model}}/{{train_set}}.tsv"
    threads: COMPUTE["predict_threads"]
    resources:
        gpu=1,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/predict.py --cache {input.cache_npy:q} "
        "--cache-index {input.cache_index:q} --manifest {input.manifest:q} --dataset {params.dataset:q} "
        "--settings-json {params.settings:q} --weights {input.weights:q} --parts {params.parts:q} "
        "--out {output.parts:q} --combined {output.combined:q} --batch-size {params.batch_size} --threads {threads} "
        "--device {params.device:q} > {log:q} 2>&1"


rule metrics:
    input:
        f"{RESULTS}/predictions/{{model}}/{{train_set}}/{{test_set}}.parquet",
    output:
        f"{RESULTS}/metrics/{{model}}/{{train_set}}/{{test_set}}.json",
    params:
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
        "{params.py} workflow/scripts/metrics.py --predictions {input:q} --out {output:q} "
        "--threshold {params.threshold} --bootstrap {params.bootstrap} --seed {params.seed} "
        "--model {wildcards.model:q} --train-set {wildcards.train_set:q} "
        "--test-set {wildcards.test_set:q} > {log:q} 2>&1"
