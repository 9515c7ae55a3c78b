# Stage 2, training: the decoded image cache (of every dataset: transfer datasets are cached for the
# models that are tested on them), then one GPU job per (model, train set).


rule cache:
    input:
        manifest=paths.manifest("{dataset}"),
        root=lambda wc: data_root(wc.dataset),
    output:
        npy=paths.cache_array("{dataset}", "{cache}"),
        index=paths.cache_index("{dataset}", "{cache}"),
    params:
        code=code_digest("cache"),
        py=PY,
        options=dataset_options("cache"),
        resize=lambda wc: cache_params(wc)["resize"],
        center_crop=lambda wc: cache_params(wc)["center_crop"],
    log:
        f"{paths.logs('{dataset}')}/cache/{{cache}}.log",
    benchmark:
        f"{paths.benchmarks('{dataset}')}/cache/{{cache}}.tsv"
    threads: stage_speed("cache", "workers")
    resources:
        gpu=1 if str(COMPUTE["cache_jpeg_device"]).startswith("cuda") else 0,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai cache --manifest {input.manifest:q} --root {input.root:q} "
        "--out {output.npy:q} --index {output.index:q} --resize {params.resize} "
        "--center-crop {params.center_crop} {params.options} --workers {threads} > {log:q} 2>&1"


rule pretrained:
    # Once per pretrained model, on the machine that runs Snakemake (localrule: a cluster's login
    # node has the network its GPU nodes may lack); training jobs read only its file.
    localrule: True
    output:
        weights=paths.pretrained("{model}"),
        record=paths.pretrained_record("{model}"),
    params:
        code=code_digest("pretrained"),
        py=PY,
        settings=pretrained_settings_json,
    log:
        "resources/pretrained/logs/{model}.log",
    benchmark:
        "resources/pretrained/benchmarks/{model}.tsv"
    wildcard_constraints:
        model="|".join(re.escape(m) for m in PRETRAINED) or "^$",
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai pretrained --settings-json {params.settings:q} --out {output.weights:q} "
        "> {log:q} 2>&1"


rule train:
    priority: train_priority
    # Training ends by predicting the test parts the configured test sets use with the saved
    # best-epoch weights and, when "combined" is one of them, pooling the four (no second inference).
    # A separate job would pay again for starting Python, importing torch and timm and loading the
    # model (5 s a job on a CPU, more than the inference); one cell still triggers only its own
    # model's jobs.
    input:
        unpack(cache_inputs),
        unpack(pretrained_inputs),
        manifest=paths.manifest(DATASET),
    output:
        weights=paths.weights(DATASET, "{model}", "{train_set}"),
        log_csv=paths.train_log(DATASET, "{model}", "{train_set}"),
        summary=paths.train_summary(DATASET, "{model}", "{train_set}"),
        validation=paths.validation_predictions(DATASET, "{model}", "{train_set}"),
        predictions=[paths.predictions(DATASET, "{model}", "{train_set}", s) for s in PREDICTED_SETS],
    params:
        code=code_digest("train"),
        launcher=train_launcher(),
        options=stage_options("train"),
        settings=settings_json,
        rows=train_rows,
        init=init_weights,
        out_dir=lambda wc: paths.model_dir(DATASET, wc.model, wc.train_set),
        part_files=lambda wc, output: output.predictions[: len(PREDICTED_PARTS)],
        combined=lambda wc, output: ["--combined", output.predictions[-1]] if sets.COMBINED in PREDICTED_SETS else [],
    log:
        f"{LOGS}/train/{{model}}/{{train_set}}.log",
    benchmark:
        f"{BENCH}/train/{{model}}/{{train_set}}.tsv"
    threads: stage_speed("train", "threads")
    resources:
        gpu=COMPUTE["gpus_per_job"],
        # how fast batches are read, not what is trained: a resource, so changing it re-runs nothing
        loader_workers=lambda wc: stage_speed("train", "loader_workers", wc.model),
    conda:
        "../../environment.yml"
    shell:
        "{params.launcher} train --cache {input.cache_npy:q} --cache-index {input.cache_index:q} "
        "--manifest {input.manifest:q} --settings-json {params.settings:q} --model {wildcards.model:q} "
        "--train-set {wildcards.train_set:q} {params.rows:q} {params.init:q} --out-dir {params.out_dir:q} {params.options} "
        "--predictions {params.part_files:q} {params.combined:q} --validation {output.validation:q} --threads {threads} "
        "--loader-workers {resources.loader_workers} > {log:q} 2>&1"
