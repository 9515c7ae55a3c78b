# Stage 5, reports: the paper's four tables beside this run's numbers, figures beyond the paper and a
# README saying what ran. `snakemake --report reports/{dataset}/report.html` gathers the outputs marked
# with report() across stages.



rule report:
    # seconds of tables and figures: runs where Snakemake runs
    localrule: True
    input:
        metrics=metrics_files(),
        train=[paths.train_summary(DATASET, m, tr) for m, tr in PAIRS],
        explain=explain_files() + xai_report_files(),
        transfer=transfer_files(),
        predictions=part_prediction_files(),
        validation=validation_files(),
    output:
        tables_csv=[
            report(p, caption="../report/paper_table.rst", category="5. Paper tables",
                   labels={"table": f"Table {i + 1}"})
            for i, p in enumerate(paper_table_outputs("csv"))
        ],
        tables_md=paper_table_outputs("md"),
        tables_tex=paper_table_outputs("tex"),
        matrices_md=f"{REPORTS}/tables/matrices.md",
        matrices_csv=report(f"{REPORTS}/tables/matrices.csv", caption="../report/matrices.rst",
                            category="3. Evaluation", labels={"figure": "every cell (table)"}),
        curves=report(f"{REPORTS}/figures/training_curves.png", caption="../report/training_curves.rst",
                      category="2. Training", labels={"figure": "training curves"}),
        matrices=[
            report(f"{REPORTS}/figures/matrix_{m}.png", caption="../report/matrix.rst",
                   category="3. Evaluation", subcategory="train x test matrices", labels={"model": m})
            for m in GRID_MODELS
        ],
        confusion=[
            report(f"{REPORTS}/figures/confusion_{m}.png", caption="../report/confusion.rst",
                   category="3. Evaluation", subcategory="confusion matrices", labels={"model": m})
            for m in GRID_MODELS
        ],
        generalization_md=f"{REPORTS}/tables/generalization.md",
        generalization_csv=report(f"{REPORTS}/tables/generalization.csv", caption="../report/generalization.rst",
                                  category="3. Evaluation", labels={"table": "accuracy per generator"}),
        transfer_md=f"{REPORTS}/tables/transfer.md",
        transfer_csv=report(f"{REPORTS}/tables/transfer.csv", caption="../report/transfer.rst",
                            category="3. Evaluation", labels={"table": "cross-dataset cells"}),
        calibration_md=f"{REPORTS}/tables/calibration.md",
        calibration_csv=report(f"{REPORTS}/tables/calibration.csv", caption="../report/calibration.rst",
                               category="3. Evaluation", labels={"table": "calibration and shared threshold"}),
        reliability=report(f"{REPORTS}/figures/reliability.png", caption="../report/reliability.rst",
                           category="3. Evaluation", labels={"figure": "reliability diagrams"}),
        readme=f"{REPORTS}/README.md",
    params:
        code=code_digest("report"),
        py=PY,
        options=stage_options("report"),
        out_dir=lambda wc, output: str(Path(output.readme).parent),
        # results/{dataset}, read off a train.json path: names the files of missing cells
        results=lambda wc, input: str(Path(input.train[0]).parents[3]),
        config_files=[str(f) for f in workflow.configfiles],
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv"
    conda:
        "../../environment.yml"
    shell:
        "{params.py} -m deepfake_xai report --metrics {input.metrics:q} --train {input.train:q} "
        "--explain {input.explain:q} --transfer {input.transfer:q} --predictions {input.predictions:q} "
        "--validation {input.validation:q} --out-dir {params.out_dir:q} --results {params.results:q} "
        "--config {params.config_files:q} {params.options} > {log:q} 2>&1"
