# Stage 4b, explanation quality: for every explained cell, how faithful each method's maps are
# (deletion/insertion AUC, ROAD, confidence with the top pixels kept), how well they localize the
# recorded evidence of fakes (pointing game, energy in the region), whether they survive the sanity
# check (randomized weights), and how robust the model is to re-compression and rescaling. Then one
# summary: methods ranked, spatial priors, frequency spectra, robustness curves.


rule xai_metrics:
    priority: EXPLANATION_PRIORITY
    input:
        unpack(cache_inputs),
        manifest=paths.manifest(DATASET),
        weights=paths.weights(DATASET, "{model}", "{train_set}"),
        maps=paths.maps(DATASET, "{model}", "{train_set}", "{test_set}"),
        predictions=paths.predictions(DATASET, "{model}", "{train_set}", "{test_set}"),
    output:
        paths.xai_metrics(DATASET, "{model}", "{train_set}", "{test_set}"),
    params:
        code=code_digest("xai-cell"),
        py=PY,
        options=stage_options("xai-cell"),
        settings=settings_json,
    log:
        f"{LOGS}/xai_metrics/{{model}}/{{train_set}}/{{test_set}}.log",
    benchmark:
        f"{BENCH}/xai_metrics/{{model}}/{{train_set}}/{{test_set}}.tsv"
    threads: stage_speed("xai-cell", "threads")
    resources:
        gpu=1,
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai xai-cell --weights {input.weights:q} --settings-json {params.settings:q} "
        "--cache {input.cache_npy:q} --cache-index {input.cache_index:q} --manifest {input.manifest:q} "
        "--maps {input.maps:q} --predictions {input.predictions:q} --model {wildcards.model:q} "
        "--train-set {wildcards.train_set:q} --test-set {wildcards.test_set:q} --out {output:q} "
        "{params.options} --threads {threads} > {log:q} 2>&1"


rule xai_report:
    # seconds of tables and figures from the xai files: runs where Snakemake runs
    localrule: True
    priority: EXPLANATION_PRIORITY
    input:
        **spectrum_cache(),
        manifest=paths.manifest(DATASET),
        scores=xai_files(),
        maps=maps_files(),
    output:
        ranking_md=paths.xai_report(DATASET, "ranking.md"),
        ranking=report(paths.xai_report(DATASET, "ranking.csv"), caption="../report/xai_ranking.rst",
                       category="6. Explanation quality", labels={"figure": "methods ranked"}),
        ranking_png=report(paths.xai_report(DATASET, "ranking.png"), caption="../report/xai_ranking_figure.rst",
                           category="6. Explanation quality", labels={"figure": "methods on known answers"}),
        controlled_md=paths.xai_report(DATASET, "controlled.md"),
        controlled=report(paths.xai_report(DATASET, "controlled.csv"), caption="../report/xai_controlled.rst",
                          category="6. Explanation quality", labels={"figure": "controlled check"}),
        replacements=report(paths.xai_report(DATASET, "replacements.csv"), caption="../report/xai_replacements.rst",
                            category="6. Explanation quality", labels={"figure": "removal replacements"}),
        priors=report(paths.xai_report(DATASET, "priors.png"), caption="../report/xai_priors.rst",
                      category="6. Explanation quality", labels={"figure": "spatial priors"}),
        spectra=report(paths.xai_report(DATASET, "spectra.png"), caption="../report/xai_spectra.rst",
                       category="6. Explanation quality", labels={"figure": "frequency spectra"}),
        cascade=report(paths.xai_report(DATASET, "cascade.png"), caption="../report/xai_cascade.rst",
                       category="6. Explanation quality", labels={"figure": "cascading randomization"}),
        drift_csv=paths.xai_report(DATASET, "sharing_drift.csv"),
        drift=report(paths.xai_report(DATASET, "sharing_drift.png"), caption="../report/xai_drift.rst",
                     category="6. Explanation quality", labels={"figure": "explanation drift under sharing"}),
        robustness=report(paths.xai_report(DATASET, "robustness.png"), caption="../report/xai_robustness.rst",
                          category="6. Explanation quality", labels={"figure": "robustness"}),
    params:
        code=code_digest("xai-report"),
        py=PY,
        options=stage_options("xai-report"),
        out_dir=lambda wc, output: str(Path(output.ranking_md).parent),
    log:
        f"{LOGS}/xai_report.log",
    benchmark:
        f"{BENCH}/xai_report.tsv"
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai xai-report --scores {input.scores:q} --maps {input.maps:q} "
        "--manifest {input.manifest:q} --cache {input.cache_npy:q} --cache-index {input.cache_index:q} "
        "--out-dir {params.out_dir:q} {params.options} > {log:q} 2>&1"
