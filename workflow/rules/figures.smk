# One job per figure: figures/<figure>.pdf/.png/.csv, its claims and its provenance.


rule figure:
    input:
        figure_inputs,
    output:
        pdf="figures/{figure}.pdf",
        png=report(
            "figures/{figure}.png",
            caption="../report/figure.rst",
            category=figure_section,
            labels=figure_labels,
        ),
        csv="figures/{figure}.csv",
        claims="results/claims/{figure}.json",
        provenance="results/provenance/{figure}.json",
    params:
        spec=figure_spec,
        # title, caption and section are read by the --report caption; as params, editing a
        # caption in the figure module re-runs exactly that figure
        title=lambda wc: figure_meta(wc.figure)["title"],
        caption=lambda wc: figure_meta(wc.figure)["caption"],
        section=lambda wc: figure_meta(wc.figure)["section"],
    log:
        "logs/figure/{figure}.log",
    benchmark:
        "benchmarks/figure/{figure}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        # the largest figure job peaks at 2.0 GB (energy_level_jumps at n = 400, m = 30: D_i of 150 snapshots)
        mem_mb=3000,
        runtime=20,
    # the config name (provenance, not a rerun trigger) comes from TMS_CONFIG_NAME: see common.smk
    shell:
        "tms plot {wildcards.figure:q} --figure-spec {params.spec:q} "
        "--results results --out figures > {log:q} 2>&1"
