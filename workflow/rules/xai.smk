# Stage 4b, explanation quality: for every explained cell, how faithful each method's maps are
# (deletion/insertion AUC, ROAD, confidence with the top pixels kept), how well they localize the
# recorded evidence of fakes (pointing game, energy in the region), whether they survive the sanity
# check (randomized weights), and how robust the model is to re-compression and rescaling. Then one
# summary: methods ranked, spatial priors, frequency spectra, robustness curves.


rule xai_metrics:
    priority: EXPLANATION_PRIORITY
    input:
        unpack(cache_inputs),
        manifest=f"{RESULTS}/manifest.parquet",
        weights=f"{RESULTS}/models/{{model}}/{{train_set}}/model.safetensors",
        maps=f"{RESULTS}/heatmaps/{{model}}/{{train_set}}/{{test_set}}/maps.npz",
        predictions=f"{RESULTS}/predictions/{{model}}/{{train_set}}/{{test_set}}.parquet",
    output:
        f"{RESULTS}/xai_metrics/{{model}}/{{train_set}}/{{test_set}}.json",
    params:
        code=code_digest("xai-cell"),
        py=PY,
        dataset=DATASET,
        settings=settings_json,
        device=COMPUTE["device"] or "auto",
        n_images=XAI["n_images"],
        steps=XAI["steps"],
        keep=XAI["keep"],
        road=XAI["road_percentiles"],
        jpeg=XAI["jpeg_qualities"],
        scales=XAI["scales"],
        robustness_images=XAI["robustness_images"],
        batch_size=XAI["batch_size"],
        seed=XAI["seed"],
        threshold=config["evaluate"]["threshold"],
    log:
        f"{LOGS}/xai_metrics/{{model}}/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/xai_metrics/{{model}}/{{train_set}}/{{test_set}}.tsv"
    wildcard_constraints:
        test_set="presocial|facebook|telegram|twitter|combined",
    threads: COMPUTE["predict_threads"]
    resources:
        gpu=1,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/xai_cell.py --weights {input.weights:q} --settings-json {params.settings:q} "
        "--cache {input.cache_npy:q} --cache-index {input.cache_index:q} --manifest {input.manifest:q} "
        "--dataset {params.dataset:q} --maps {input.maps:q} --predictions {input.predictions:q} "
        "--model {wildcards.model:q} --train-set {wildcards.train_set:q} --test-set {wildcards.test_set:q} "
        "--n-images {params.n_images} --steps {params.steps} --keep {params.keep} "
        "--road-percentiles {params.road} --jpeg {params.jpeg} --scales {params.scales} "
        "--robustness-images {params.robustness_images} --threshold {params.threshold} "
        "--batch-size {params.batch_size} --seed {params.seed} --out {output:q} "
        "--threads {threads} --device {params.device:q} > {log:q} 2>&1"


rule xai_report:
    priority: EXPLANATION_PRIORITY
    input:
        **spectrum_cache(),
        manifest=f"{RESULTS}/manifest.parquet",
        scores=xai_files(),
        maps=[f"{RESULTS}/heatmaps/{m}/{tr}/{te}/maps.npz" for m, tr, te in EXPLAIN_CELLS],
    output:
        ranking_md=f"{REPORTS}/xai/ranking.md",
        ranking=report(f"{REPORTS}/xai/ranking.csv", caption="../report/xai_ranking.rst",
                       category="6. Explanation quality", labels={"figure": "methods ranked"}),
        priors=report(f"{REPORTS}/xai/priors.png", caption="../report/xai_priors.rst",
                      category="6. Explanation quality", labels={"figure": "spatial priors"}),
        spectra=report(f"{REPORTS}/xai/spectra.png", caption="../report/xai_spectra.rst",
                       category="6. Explanation quality", labels={"figure": "frequency spectra"}),
        robustness=report(f"{REPORTS}/xai/robustness.png", caption="../report/xai_robustness.rst",
                          category="6. Explanation quality", labels={"figure": "robustness"}),
    params:
        code=code_digest("xai-report"),
        py=PY,
        dataset=DATASET,
        method=XAI["prior_method"],
        out_dir=lambda wc, output: str(Path(output.ranking_md).parent),
    log:
        f"{LOGS}/xai_report.log",
    benchmark:
        f"{BENCH}/xai_report.tsv"
    conda:
        "../../environment.yml"
    shell:
        "{params.py} workflow/scripts/xai_report.py --scores {input.scores:q} --maps {input.maps:q} "
        "--manifest {input.manifest:q} --dataset {params.dataset:q} --cache {input.cache_npy:q} "
        "--cache-index {input.cache_index:q} --method {params.method:q} "
        "--out-dir {params.out_dir:q} > {log:q} 2>&1"
