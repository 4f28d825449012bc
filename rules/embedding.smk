# Rules of the embedding study (figures are registered with register_figure).
# embedding_principle.txt: small full-batch float64 experiments with their own training loops
# (lossatlas/embedding.py), keyed like the study config (fig01, fig03a, fig03b, fig04, fig05), one job each;
# one analysis job writing each figure's arrays; one figure rule drawing one file per job (no torch import).
# Library: lossatlas/analysis/embedding.py and lossatlas/figures/embedding.py.
from lossatlas.fingerprint import code_fingerprint

if study_enabled("embedding"):
    EMB = study_config("embedding")
    EMB_DIR = "results/analysis/embedding"
    EMB_FIGS = "results/figures/embedding"
    EMB_EXPERIMENTS = ["fig01", "fig03a", "fig03b", "fig04", "fig05"]
    # figure file stem (= drawing function) -> the experiment it is drawn from;
    # = lossatlas.figures.embedding.FIGURES (tests/test_paper_shape.py keeps them equal)
    EMB_FIGURES = {
        "fig01_stagnation": "fig01",
        "fig03a_hessian_spectrum_1d": "fig03a",
        "fig03b_hessian_spectrum_iris": "fig03b",
        "fig04_critical_point_diagram": "fig04",
        "fig05a_loss": "fig05",
        "fig05b_similarity": "fig05",
        "fig05c_reduced_loss": "fig05",
        "fig05d_agreement": "fig05",
    }

    rule embedding_experiment:
        input:
            dataset=lambda wc: dataset_h5(EMB[wc.experiment]["dataset"]),
        output:
            arrays=f"{EMB_DIR}/{{experiment}}.npz",
            summary=f"{EMB_DIR}/{{experiment}}.json",
        params:
            cfg=lambda wc: jsonable(EMB[wc.experiment]),
            code=code_fingerprint("embedding_experiment.py"),
        log:
            "results/logs/embedding/experiment_{experiment}.log",
        wildcard_constraints:
            experiment=_alternation(EMB_EXPERIMENTS),
        threads: 1
        resources:
            mem_mb=2000,
            runtime=emb_experiment_runtime,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/embedding_experiment.py"

    rule embedding_analysis:
        input:
            arrays=[f"{EMB_DIR}/{e}.npz" for e in EMB_EXPERIMENTS],
            summaries=[f"{EMB_DIR}/{e}.json" for e in EMB_EXPERIMENTS],
        output:
            **{name: f"{EMB_DIR}/{name}.npz" for name in EMB_FIGURES},
        params:
            experiments=EMB_EXPERIMENTS,
            code=code_fingerprint("embedding_analysis.py"),
        log:
            "results/logs/embedding/analysis.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/embedding_analysis.py"

    rule embedding_figure:
        input:
            data=f"{EMB_DIR}/{{figure}}.npz",
            summary=lambda wc: f"{EMB_DIR}/{EMB_FIGURES[wc.figure]}.json",
        output:
            figure_report(f"{EMB_FIGS}/{{figure}}.png"),
        params:
            caption=lambda wc, output: figure_caption(output),
            code=code_fingerprint("embedding_figure.py"),
        log:
            "results/logs/embedding/{figure}.log",
        wildcard_constraints:
            figure=_alternation(list(EMB_FIGURES)),
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/embedding_figure.py"

    for name in EMB_FIGURES:
        # the study trains its own small nets: no run of the run grid is behind these figures
        register_figure(f"{EMB_FIGS}/{name}.png", runs=[])
