# Rules of the embedding study (figures are appended to FIGURES).
# embedding_principle.txt: small full-batch float64 experiments with their own training loops
# (lossatlas/embedding.py). One analysis job per experiment (Fig 1, Fig 3a, Fig 3b, Fig 4, Fig 5), writing
# results/analysis/embedding/<experiment>.npz + .json, and one job per figure (no torch import).
# Library: lossatlas/analysis/embedding.py and lossatlas/figures/embedding.py.

if study_enabled("embedding"):
    EMB = study_config("embedding")
    EMB_DIR = "results/analysis/embedding"
    EMB_FIGS = "results/figures/embedding"
    EMB_CORE = f"{LIB}/embedding.py"
    EMB_LIB = f"{LIB}/analysis/embedding.py"
    EMB_FIG_LIB = f"{LIB}/figures/embedding.py"
    # experiment -> (analysis function, its helpers whose edits rerun it)
    EMB_ANALYSES = {
        "fig1": "fig01_stagnation",
        "fig3a": "fig03_hessian_spectra",
        "fig3b": "fig03_hessian_spectra",
        "fig4": "fig04_critical_point_diagram",
        "fig5": "fig05_condensation",
    }
    EMB_HELPERS = ["load_xy", "_save", "_train", "_stagnation_point", "_grid", "_hidden_widths",
                   "cluster_critical_points", "agreement_matrix"]
    # figure file stem (= drawing function) -> the experiment it draws
    EMB_FIGURES = {
        "fig01_stagnation": "fig1",
        "fig03a_hessian_spectrum_1d": "fig3a",
        "fig03b_hessian_spectrum_iris": "fig3b",
        "fig04_critical_point_diagram": "fig4",
    }
    # Fig 5's four panels come from one experiment and are drawn by one job (one start-up instead of four);
    # asking for any one of them rebuilds it.
    EMB_FIG05_PANELS = ["fig05a_loss", "fig05b_similarity", "fig05c_reduced_loss", "fig05d_agreement"]
    EMB_FIG_HELPERS = ["_load", "_save", "_spectrum_figure", "_mark_blue"]

    rule embedding_analysis:
        input:
            dataset=lambda wc: dataset_h5(EMB[wc.experiment]["dataset"]),
        output:
            arrays=f"{EMB_DIR}/{{experiment}}.npz",
            summary=f"{EMB_DIR}/{{experiment}}.json",
        params:
            function=lambda wc: EMB_ANALYSES[wc.experiment],
            cfg=lambda wc: jsonable(EMB[wc.experiment]),
            code=lambda wc: source_hash(EMB_CORE) + _emb_code(EMB_ANALYSES[wc.experiment], EMB_HELPERS, EMB_LIB),
        log:
            "results/logs/embedding/analysis_{experiment}.log",
        wildcard_constraints:
            experiment=_alternation(list(EMB_ANALYSES)),
        threads: 1
        resources:
            mem_mb=2000,
            # minutes; paper scale: Fig 5 (width 400 on 1,000 MNIST images) runs about 0.1 s per epoch
            runtime=lambda wc: max(30, EMB[wc.experiment]["epochs"] // (300 if wc.experiment == "fig5" else 3000)),
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/embedding_analysis.py"

    rule embedding_figure:
        input:
            arrays=lambda wc: f"{EMB_DIR}/{EMB_FIGURES[wc.figure]}.npz",
            summary=lambda wc: f"{EMB_DIR}/{EMB_FIGURES[wc.figure]}.json",
        output:
            figure_report(f"{EMB_FIGS}/{{figure}}.png"),
        params:
            caption=lambda wc, output: figure_caption(output),
            functions=lambda wc: [wc.figure],
            code=lambda wc: _emb_code(wc.figure, EMB_FIG_HELPERS, EMB_FIG_LIB),
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

    rule embedding_fig05_panels:
        input:
            arrays=f"{EMB_DIR}/fig5.npz",
            summary=f"{EMB_DIR}/fig5.json",
        output:
            [figure_report(f"{EMB_FIGS}/{name}.png") for name in EMB_FIG05_PANELS],
        params:
            caption=figure_caption([f"{EMB_FIGS}/{name}.png" for name in EMB_FIG05_PANELS]),
            functions=EMB_FIG05_PANELS,
            code="".join(_emb_code(name, EMB_FIG_HELPERS, EMB_FIG_LIB) for name in EMB_FIG05_PANELS),
        log:
            "results/logs/embedding/fig05_panels.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        conda:
            "../envs/lossatlas.yaml"
        script:
            "../workflow_scripts/embedding_figure.py"

    FIGURES.extend(f"{EMB_FIGS}/{name}.png" for name in [*EMB_FIGURES, *EMB_FIG05_PANELS])
