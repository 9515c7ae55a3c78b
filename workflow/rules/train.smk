# Stage 2, training: the decoded image cache, then one GPU job per (model, train set).


rule cache:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        root=DATA_ROOT,
    output:
        npy=f"{RESULTS}/cache/{{cache}}.npy",
        index=f"{RESULTS}/cache/{{cache}}.parquet",
    params:
        code=code_digest("cache"),
        py=PY,
        dataset=DATASET,
        resize=lambda wc: cache_params(wc)["resize"],
        center_crop=lambda wc: cache_params(wc)["center_crop"],
        jpeg_device=COMPUTE["cache_jpeg_device"] or "none",
    log:
        f"{LOGS}/cache/{{cache}}.log",
    benchmark:
        f"{BENCH}/cache/{{cache}}.tsv"
    threads: COMPUTE["cache_workers"]
    resources:
        gpu=1 if str(COMPUTE["cache_jpeg_device"]).startswith("cuda") else 0,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/cache.py --manifest {input.manifest:q} --dataset {params.dataset:q} "
        "--root {input.root:q} --out {output.npy:q} --index {output.index:q} --resize {params.resize} "
        "--center-crop {params.center_crop} --workers {threads} --jpeg-device {params.jpeg_device:q} > {log:q} 2>&1"


rule train:
    priority: train_priority
    # Training ends by predicting the test parts the configured test sets use with the saved
    # best-epoch weights and, when "combined" is one of them, pooling the four (no second inference). A separate job would pay again for starting Python,
    # importing torch and timm and loading the model (5 s a job on a CPU, more than the inference);
    # one cell still triggers only its own model's jobs.
    input:
        unpack(cache_inputs),
        manifest=f"{RESULTS}/manifest.parquet",
    output:
        weights=f"{RESULTS}/models/{{model}}/{{train_set}}/model.safetensors",
        log_csv=f"{RESULTS}/models/{{model}}/{{train_set}}/log.csv",
        summary=f"{RESULTS}/models/{{model}}/{{train_set}}/train.json",
        predictions=expand(f"{RESULTS}/predictions/{{{{model}}}}/{{{{train_set}}}}/{{test_set}}.parquet",
                           test_set=PREDICTED_SETS),
    params:
        code=code_digest("train"),
        launcher=train_launcher(),
        dataset=DATASET,
        settings=settings_json,
        out_dir=lambda wc: model_dir(wc.model, wc.train_set),
        device=COMPUTE["device"] or "auto",
        parts=PREDICTED_PARTS,
        part_files=lambda wc, output: output.predictions[: len(PREDICTED_PARTS)],
        combined=lambda wc, output: ["--combined", output.predictions[-1]] if "combined" in PREDICTED_SETS else [],
    log:
        f"{LOGS}/train/{{model}}/{{train_set}}.log",
    benchmark:
        f"{BENCH}/train/{{model}}/{{train_set}}.tsv"
    threads: COMPUTE["train_threads"]
    resources:
        gpu=COMPUTE["gpus_per_job"],
        # how fast batches are read, not what is trained: a resource, so changing it re-runs nothing
        loader_workers=lambda wc: dxcfg.model_settings(config, wc.model)["loader_workers"],
    conda:
        "../../environment.yml"
    shell:
        "{params.launcher} workflow/scripts/train.py --cache {input.cache_npy:q} "
        "--cache-index {input.cache_index:q} --manifest {input.manifest:q} --dataset {params.dataset:q} "
        "--settings-json {params.settings:q} --model {wildcards.model:q} --train-set {wildcards.train_set:q} "
        "--out-dir {params.out_dir:q} --threads {threads} --device {params.device:q} "
        "--parts {params.parts:q} --predictions {params.part_files:q} {params.combined:q} "
        "--loader-workers {resources.loader_workers} > {log:q} 2>&1"
