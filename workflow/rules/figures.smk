# One job per figure: figures/<figure>.pdf/.png/.csv, its claims and its provenance.


rule figure:
    input:
        figure_inputs,
    output:
        pdf=report(
            "figures/{figure}.pdf",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        png="figures/{figure}.png",
        csv="figures/{figure}.csv",
        claims="results/claims/{figure}.json",
        provenance="results/provenance/{figure}.json",
    params:
        spec=figure_spec,
        config_name=CONFIG_NAME,
    log:
        "logs/figure/{figure}.log",
    benchmark:
        "benchmarks/figure/{figure}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "tms plot {wildcards.figure:q} --figure-spec {params.spec:q} --config-name {params.config_name:q} "
        "--results results --out figures > {log:q} 2>&1"
