# Stage 4, explainability: bulk heatmaps per (model, train set, test set) cell, montages of each
# method across models, activation maximization per trained model.


rule explain:
    priority: EXPLANATION_PRIORITY
    input:
        unpack(cache_inputs),
        manifest=paths.manifest(DATASET),
        weights=paths.weights(DATASET, "{model}", "{train_set}"),
        predictions=paths.predictions(DATASET, "{model}", "{train_set}", "{test_set}"),
    output:
        maps=paths.maps(DATASET, "{model}", "{train_set}", "{test_set}"),
        panels=report(
            directory(paths.panels(DATASET, "{model}", "{train_set}", "{test_set}")),
            patterns=["{name}.png"],
            caption="../report/panels.rst",
            category="4. Explainability",
            subcategory="panels: {model} ({train_set} -> {test_set})",
            labels={"model": "{model}", "image": "{name}"},
        ),
    params:
        code=code_digest("explain-cell"),
        py=PY,
        options=stage_options("explain-cell"),
        settings=settings_json,
    log:
        f"{LOGS}/explain/{{model}}/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/explain/{{model}}/{{train_set}}/{{test_set}}.tsv"
    threads: stage_speed("explain-cell", "threads")
    resources:
        gpu=1,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai explain-cell --weights {input.weights:q} "
        "--settings-json {params.settings:q} --cache {input.cache_npy:q} --cache-index {input.cache_index:q} "
        "--manifest {input.manifest:q} --predictions {input.predictions:q} --out {output.maps:q} "
        "--panels-dir {output.panels:q} {params.options} --threads {threads} > {log:q} 2>&1"


rule montage:
    # seconds of image tiling: runs where Snakemake runs
    localrule: True
    priority: EXPLANATION_PRIORITY
    input:
        maps=lambda wc: [paths.maps(DATASET, m, wc.train_set, wc.test_set)
                         for m in montage_models(wc.train_set, wc.test_set)],
    output:
        report(
            directory(paths.montages(DATASET, "{train_set}", "{test_set}")),
            patterns=["{method}.png"],
            caption="../report/montage.rst",
            category="4. Explainability",
            subcategory="montages ({train_set} -> {test_set})",
            labels={"method": "{method}"},
        ),
    params:
        code=code_digest("montage"),
        py=PY,
        options=stage_options("montage"),
        models=lambda wc: montage_models(wc.train_set, wc.test_set),
    log:
        f"{LOGS}/montage/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/montage/{{train_set}}/{{test_set}}.tsv"
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai montage --maps {input.maps:q} --models {params.models:q} "
        "--out-dir {output:q} {params.options} > {log:q} 2>&1"


rule actmax:
    priority: EXPLANATION_PRIORITY
    input:
        weights=paths.weights(DATASET, "{model}", "{train_set}"),
    output:
        report(
            paths.actmax(DATASET, "{model}", "{train_set}"),
            caption="../report/actmax.rst",
            category="4. Explainability",
            subcategory="activation maximization",
            labels={"model": "{model}", "train set": "{train_set}"},
        ),
    params:
        code=code_digest("actmax"),
        py=PY,
        options=stage_options("actmax"),
        settings=settings_json,
    log:
        f"{LOGS}/actmax/{{model}}/{{train_set}}.log",
    benchmark:
        f"{BENCH}/actmax/{{model}}/{{train_set}}.tsv"
    threads: stage_speed("actmax", "threads")
    resources:
        gpu=1,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai actmax --weights {input.weights:q} --settings-json {params.settings:q} "
        "--out {output:q} {params.options} --threads {threads} > {log:q} 2>&1"
