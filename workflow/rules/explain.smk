# Stage 4, explainability: bulk heatmaps per (model, train set, test set) cell, montages of each
# method across models, activation maximization per trained model.

EXPLAIN = config["explain"]


rule explain:
    priority: EXPLANATION_PRIORITY
    input:
        unpack(cache_inputs),
        manifest=f"{RESULTS}/manifest.parquet",
        weights=f"{RESULTS}/models/{{model}}/{{train_set}}/model.safetensors",
        predictions=f"{RESULTS}/predictions/{{model}}/{{train_set}}/{{test_set}}.parquet",
    output:
        maps=f"{RESULTS}/heatmaps/{{model}}/{{train_set}}/{{test_set}}/maps.npz",
        panels=report(
            directory(f"{RESULTS}/heatmaps/{{model}}/{{train_set}}/{{test_set}}/panels"),
            patterns=["{name}.png"],
            caption="../report/panels.rst",
            category="4. Explainability",
            subcategory="panels: {model} ({train_set} -> {test_set})",
            labels={"model": "{model}", "image": "{name}"},
        ),
    params:
        code=code_digest("explain-cell"),
        py=PY,
        dataset=DATASET,
        settings=settings_json,
        methods=EXPLAIN["methods"],
        device=COMPUTE["device"] or "auto",
        n_images=EXPLAIN["n_images"],
        shared=EXPLAIN["shared_images"],
        panels=EXPLAIN["panels"],
        target=EXPLAIN["target"],
        batch_size=EXPLAIN["batch_size"],
        seed=EXPLAIN["seed"],
        amp="--amp" if EXPLAIN["amp"] else "",
        threshold=config["evaluate"]["threshold"],
    log:
        f"{LOGS}/explain/{{model}}/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/explain/{{model}}/{{train_set}}/{{test_set}}.tsv"
    wildcard_constraints:
        test_set="presocial|facebook|telegram|twitter|combined",
    threads: COMPUTE["predict_threads"]
    resources:
        gpu=1,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/explain_cell.py --weights {input.weights:q} "
        "--settings-json {params.settings:q} --cache {input.cache_npy:q} --cache-index {input.cache_index:q} "
        "--manifest {input.manifest:q} --dataset {params.dataset:q} --predictions {input.predictions:q} "
        "--methods {params.methods:q} --n-images {params.n_images} --shared {params.shared} "
        "--panels {params.panels} --target {params.target} --threshold {params.threshold} --batch-size {params.batch_size} "
        "--seed {params.seed} --out {output.maps:q} --panels-dir {output.panels:q} "
        "--threads {threads} --device {params.device:q} {params.amp} > {log:q} 2>&1"


rule montage:
    priority: EXPLANATION_PRIORITY
    input:
        maps=lambda wc: [f"{RESULTS}/heatmaps/{m}/{wc.train_set}/{wc.test_set}/maps.npz"
                         for m in montage_models(wc.train_set, wc.test_set)],
    output:
        report(
            directory(f"{RESULTS}/montages/{{train_set}}/{{test_set}}"),
            patterns=["{method}.png"],
            caption="../report/montage.rst",
            category="4. Explainability",
            subcategory="montages ({train_set} -> {test_set})",
            labels={"method": "{method}"},
        ),
    params:
        code=code_digest("montage"),
        py=PY,
        models=lambda wc: montage_models(wc.train_set, wc.test_set),
        methods=EXPLAIN["methods"],
        images=EXPLAIN["shared_images"],
    log:
        f"{LOGS}/montage/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/montage/{{train_set}}/{{test_set}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/montage.py --maps {input.maps:q} --models {params.models:q} "
        "--methods {params.methods:q} --out-dir {output:q} --images {params.images} > {log:q} 2>&1"


rule actmax:
    priority: EXPLANATION_PRIORITY
    input:
        weights=f"{RESULTS}/models/{{model}}/{{train_set}}/model.safetensors",
    output:
        report(
            f"{RESULTS}/heatmaps/{{model}}/{{train_set}}/actmax.png",
            caption="../report/actmax.rst",
            category="4. Explainability",
            subcategory="activation maximization",
            labels={"model": "{model}", "train set": "{train_set}"},
        ),
    params:
        code=code_digest("actmax"),
        py=PY,
        settings=settings_json,
        steps=EXPLAIN["actmax_steps"],
        seed=EXPLAIN["seed"],
        device=COMPUTE["device"] or "auto",
    log:
        f"{LOGS}/actmax/{{model}}/{{train_set}}.log",
    benchmark:
        f"{BENCH}/actmax/{{model}}/{{train_set}}.tsv"
    threads: COMPUTE["predict_threads"]
    resources:
        gpu=1,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/actmax.py --weights {input.weights:q} --settings-json {params.settings:q} "
        "--steps {params.steps} --seed {params.seed} --out {output:q} --threads {threads} "
        "--device {params.device:q} > {log:q} 2>&1"
