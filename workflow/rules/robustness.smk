# The robustness run (config `robustness.enabled`): every experiment retrained under each variant of the
# build (other master seeds, a larger budget), every figure's claims evaluated on each, and the
# verdicts lined up per claim in results/robustness.json (tms.variants).

if ROBUSTNESS:

    wildcard_constraints:
        variant="|".join(map(re.escape, VARIANTS)),

    rule train_variant:
        output:
            run="results/variants/{variant}/{experiment}/run.npz",
            meta="results/variants/{variant}/{experiment}/meta.json",
            metrics="results/variants/{variant}/{experiment}/metrics.csv",
            cells="results/variants/{variant}/{experiment}/cells.csv",
            timings="results/variants/{variant}/{experiment}/timings.json",
        params:
            spec=variant_spec,
            seed=variant_seed,
            device=DEVICE,
        log:
            "logs/variants/{variant}/train/{experiment}.log",
        benchmark:
            "benchmarks/variants/{variant}/train/{experiment}.tsv"
        conda:
            "../../environment.yml"
        threads: train_threads
        resources:
            # the budget variant trains longer: size its time limit on the longest variant
            mem_mb=train_mem_mb,
            runtime=lambda wc, attempt: int(train_runtime(wc, attempt) * max(
                1.0, VARIANTS[wc.variant].steps_factor or 1.0)),
            gpu=1,
        shell:
            "tms train {wildcards.experiment:q} --spec {params.spec:q} --seed {params.seed} "
            "--device {params.device} --threads {threads} "
            "--out results/variants/{wildcards.variant}/{wildcards.experiment:q} > {log:q} 2>&1"

    rule figure_variant:
        input:
            variant_figure_inputs,
        output:
            pdf="results/variants/{variant}/figures/{figure}.pdf",
            png="results/variants/{variant}/figures/{figure}.png",
            csv="results/variants/{variant}/figures/{figure}.csv",
            claims="results/variants/{variant}/claims/{figure}.json",
            provenance="results/variants/{variant}/provenance/{figure}.json",
        params:
            spec=figure_spec,
        log:
            "logs/variants/{variant}/figure/{figure}.log",
        benchmark:
            "benchmarks/variants/{variant}/figure/{figure}.tsv"
        conda:
            "../../environment.yml"
        threads: 1
        resources:
            # the largest figure job peaks at 2.0 GB (energy_level_jumps at n = 400, m = 30: D_i of 150 snapshots)
            mem_mb=3000,
            runtime=20,
        shell:
            "tms plot {wildcards.figure:q} --figure-spec {params.spec:q} "
            "--results results/variants/{wildcards.variant} --out results/variants/{wildcards.variant}/figures "
            "> {log:q} 2>&1"

    rule robustness:
        input:
            findings=FINDINGS_JSON,
            claims=expand("results/variants/{variant}/claims/{figure}.json", variant=VARIANTS, figure=FIGURES),
            config=RESOLVED_CONFIG,
        output:
            ROBUSTNESS_JSON,
        log:
            "logs/robustness.log",
        benchmark:
            "benchmarks/robustness.tsv"
        conda:
            "../../environment.yml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=5,
        shell:
            "tms robustness --findings {input.findings:q} --variants results/variants --config {input.config:q} "
            "--out {output:q} > {log:q} 2>&1"
